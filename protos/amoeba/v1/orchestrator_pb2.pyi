from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExperimentSpec(_message.Message):
    __slots__ = ("name", "space", "population_size", "sample_size", "evaluations", "seed", "algorithm", "mutation_json", "objective_json", "training_json", "lease_timeout_s", "max_attempts", "algorithm_options_json", "max_consecutive_failures", "early_stopping_json", "artifacts_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    POPULATION_SIZE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    MUTATION_JSON_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_JSON_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JSON_FIELD_NUMBER: _ClassVar[int]
    LEASE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_OPTIONS_JSON_FIELD_NUMBER: _ClassVar[int]
    MAX_CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    EARLY_STOPPING_JSON_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: str
    population_size: int
    sample_size: int
    evaluations: int
    seed: int
    algorithm: str
    mutation_json: str
    objective_json: str
    training_json: str
    lease_timeout_s: float
    max_attempts: int
    algorithm_options_json: str
    max_consecutive_failures: int
    early_stopping_json: str
    artifacts_json: str
    def __init__(self, name: _Optional[str] = ..., space: _Optional[str] = ..., population_size: _Optional[int] = ..., sample_size: _Optional[int] = ..., evaluations: _Optional[int] = ..., seed: _Optional[int] = ..., algorithm: _Optional[str] = ..., mutation_json: _Optional[str] = ..., objective_json: _Optional[str] = ..., training_json: _Optional[str] = ..., lease_timeout_s: _Optional[float] = ..., max_attempts: _Optional[int] = ..., algorithm_options_json: _Optional[str] = ..., max_consecutive_failures: _Optional[int] = ..., early_stopping_json: _Optional[str] = ..., artifacts_json: _Optional[str] = ...) -> None: ...

class Experiment(_message.Message):
    __slots__ = ("id", "spec", "state", "created_at", "proposals", "completed", "failed", "rejected", "paused_reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    spec: ExperimentSpec
    state: str
    created_at: float
    proposals: int
    completed: int
    failed: int
    rejected: int
    paused_reason: str
    def __init__(self, id: _Optional[int] = ..., spec: _Optional[_Union[ExperimentSpec, _Mapping]] = ..., state: _Optional[str] = ..., created_at: _Optional[float] = ..., proposals: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., rejected: _Optional[int] = ..., paused_reason: _Optional[str] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "host", "evaluator")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    EVALUATOR_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    host: str
    evaluator: str
    def __init__(self, worker_id: _Optional[str] = ..., host: _Optional[str] = ..., evaluator: _Optional[str] = ...) -> None: ...

class Work(_message.Message):
    __slots__ = ("experiment", "individual_id", "proposal_seq", "token", "deadline", "attempt", "genome_json", "space", "seed", "training_json", "parent_seq", "mutation", "latency_ms", "fits_on_chip", "artifact_uri", "parent_artifact")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    INDIVIDUAL_ID_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    GENOME_JSON_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_JSON_FIELD_NUMBER: _ClassVar[int]
    PARENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    MUTATION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    FITS_ON_CHIP_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    PARENT_ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    individual_id: int
    proposal_seq: int
    token: str
    deadline: float
    attempt: int
    genome_json: str
    space: str
    seed: int
    training_json: str
    parent_seq: int
    mutation: str
    latency_ms: float
    fits_on_chip: bool
    artifact_uri: str
    parent_artifact: Artifact
    def __init__(self, experiment: _Optional[str] = ..., individual_id: _Optional[int] = ..., proposal_seq: _Optional[int] = ..., token: _Optional[str] = ..., deadline: _Optional[float] = ..., attempt: _Optional[int] = ..., genome_json: _Optional[str] = ..., space: _Optional[str] = ..., seed: _Optional[int] = ..., training_json: _Optional[str] = ..., parent_seq: _Optional[int] = ..., mutation: _Optional[str] = ..., latency_ms: _Optional[float] = ..., fits_on_chip: _Optional[bool] = ..., artifact_uri: _Optional[str] = ..., parent_artifact: _Optional[_Union[Artifact, _Mapping]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("uri", "sha256", "bytes")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    bytes: int
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class NoWork(_message.Message):
    __slots__ = ("done", "retry_after_s", "message")
    DONE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    done: bool
    retry_after_s: float
    message: str
    def __init__(self, done: _Optional[bool] = ..., retry_after_s: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class Metrics(_message.Message):
    __slots__ = ("accuracy", "latency_ms", "params", "mult_adds", "train_seconds", "compile_seconds", "fits_on_chip", "artifact", "inherited_params", "initial_accuracy")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MULT_ADDS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPILE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FITS_ON_CHIP_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    INHERITED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    accuracy: float
    latency_ms: float
    params: int
    mult_adds: int
    train_seconds: float
    compile_seconds: float
    fits_on_chip: bool
    artifact: Artifact
    inherited_params: int
    initial_accuracy: float
    def __init__(self, accuracy: _Optional[float] = ..., latency_ms: _Optional[float] = ..., params: _Optional[int] = ..., mult_adds: _Optional[int] = ..., train_seconds: _Optional[float] = ..., compile_seconds: _Optional[float] = ..., fits_on_chip: _Optional[bool] = ..., artifact: _Optional[_Union[Artifact, _Mapping]] = ..., inherited_params: _Optional[int] = ..., initial_accuracy: _Optional[float] = ...) -> None: ...

class Individual(_message.Message):
    __slots__ = ("id", "experiment", "proposal_seq", "genome_json", "fingerprint", "parent_seq", "mutation", "state", "attempts", "fitness", "accuracy", "latency_ms", "params", "mult_adds", "train_seconds", "compile_seconds", "lease_owner", "lease_deadline", "failure_reason", "created_at", "completed_at", "completion_rank", "in_population", "epochs", "artifact", "artifact_state", "inherited_params", "initial_accuracy")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    GENOME_JSON_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PARENT_SEQ_FIELD_NUMBER: _ClassVar[int]
    MUTATION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FITNESS_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    MULT_ADDS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPILE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_OWNER_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_RANK_FIELD_NUMBER: _ClassVar[int]
    IN_POPULATION_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_STATE_FIELD_NUMBER: _ClassVar[int]
    INHERITED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    id: int
    experiment: str
    proposal_seq: int
    genome_json: str
    fingerprint: str
    parent_seq: int
    mutation: str
    state: str
    attempts: int
    fitness: float
    accuracy: float
    latency_ms: float
    params: int
    mult_adds: int
    train_seconds: float
    compile_seconds: float
    lease_owner: str
    lease_deadline: float
    failure_reason: str
    created_at: float
    completed_at: float
    completion_rank: int
    in_population: bool
    epochs: int
    artifact: Artifact
    artifact_state: str
    inherited_params: int
    initial_accuracy: float
    def __init__(self, id: _Optional[int] = ..., experiment: _Optional[str] = ..., proposal_seq: _Optional[int] = ..., genome_json: _Optional[str] = ..., fingerprint: _Optional[str] = ..., parent_seq: _Optional[int] = ..., mutation: _Optional[str] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., fitness: _Optional[float] = ..., accuracy: _Optional[float] = ..., latency_ms: _Optional[float] = ..., params: _Optional[int] = ..., mult_adds: _Optional[int] = ..., train_seconds: _Optional[float] = ..., compile_seconds: _Optional[float] = ..., lease_owner: _Optional[str] = ..., lease_deadline: _Optional[float] = ..., failure_reason: _Optional[str] = ..., created_at: _Optional[float] = ..., completed_at: _Optional[float] = ..., completion_rank: _Optional[int] = ..., in_population: _Optional[bool] = ..., epochs: _Optional[int] = ..., artifact: _Optional[_Union[Artifact, _Mapping]] = ..., artifact_state: _Optional[str] = ..., inherited_params: _Optional[int] = ..., initial_accuracy: _Optional[float] = ...) -> None: ...

class CreateExperimentRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: ExperimentSpec
    def __init__(self, spec: _Optional[_Union[ExperimentSpec, _Mapping]] = ...) -> None: ...

class CreateExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class GetExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class ListExperimentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListExperimentsResponse(_message.Message):
    __slots__ = ("experiments",)
    EXPERIMENTS_FIELD_NUMBER: _ClassVar[int]
    experiments: _containers.RepeatedCompositeFieldContainer[Experiment]
    def __init__(self, experiments: _Optional[_Iterable[_Union[Experiment, _Mapping]]] = ...) -> None: ...

class LeaseWorkRequest(_message.Message):
    __slots__ = ("worker", "experiment")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerInfo
    experiment: str
    def __init__(self, worker: _Optional[_Union[WorkerInfo, _Mapping]] = ..., experiment: _Optional[str] = ...) -> None: ...

class LeaseWorkResponse(_message.Message):
    __slots__ = ("work", "no_work")
    WORK_FIELD_NUMBER: _ClassVar[int]
    NO_WORK_FIELD_NUMBER: _ClassVar[int]
    work: Work
    no_work: NoWork
    def __init__(self, work: _Optional[_Union[Work, _Mapping]] = ..., no_work: _Optional[_Union[NoWork, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("individual_id", "token", "worker_id")
    INDIVIDUAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    individual_id: int
    token: str
    worker_id: str
    def __init__(self, individual_id: _Optional[int] = ..., token: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("deadline",)
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    deadline: float
    def __init__(self, deadline: _Optional[float] = ...) -> None: ...

class ReportResultRequest(_message.Message):
    __slots__ = ("individual_id", "token", "worker_id", "metrics", "lease_next")
    INDIVIDUAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    LEASE_NEXT_FIELD_NUMBER: _ClassVar[int]
    individual_id: int
    token: str
    worker_id: str
    metrics: Metrics
    lease_next: bool
    def __init__(self, individual_id: _Optional[int] = ..., token: _Optional[str] = ..., worker_id: _Optional[str] = ..., metrics: _Optional[_Union[Metrics, _Mapping]] = ..., lease_next: _Optional[bool] = ...) -> None: ...

class ReportResultResponse(_message.Message):
    __slots__ = ("work", "no_work")
    WORK_FIELD_NUMBER: _ClassVar[int]
    NO_WORK_FIELD_NUMBER: _ClassVar[int]
    work: Work
    no_work: NoWork
    def __init__(self, work: _Optional[_Union[Work, _Mapping]] = ..., no_work: _Optional[_Union[NoWork, _Mapping]] = ...) -> None: ...

class ReportFailureRequest(_message.Message):
    __slots__ = ("individual_id", "token", "worker_id", "reason", "retryable")
    INDIVIDUAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    individual_id: int
    token: str
    worker_id: str
    reason: str
    retryable: bool
    def __init__(self, individual_id: _Optional[int] = ..., token: _Optional[str] = ..., worker_id: _Optional[str] = ..., reason: _Optional[str] = ..., retryable: _Optional[bool] = ...) -> None: ...

class ReportFailureResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("individual_id", "token", "worker_id")
    INDIVIDUAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    individual_id: int
    token: str
    worker_id: str
    def __init__(self, individual_id: _Optional[int] = ..., token: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ReleaseLeaseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    def __init__(self, experiment: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("status_json",)
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    status_json: str
    def __init__(self, status_json: _Optional[str] = ...) -> None: ...

class ListIndividualsRequest(_message.Message):
    __slots__ = ("experiment", "page_size", "page_token", "state")
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    experiment: str
    page_size: int
    page_token: str
    state: str
    def __init__(self, experiment: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ListIndividualsResponse(_message.Message):
    __slots__ = ("individuals", "next_page_token")
    INDIVIDUALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    individuals: _containers.RepeatedCompositeFieldContainer[Individual]
    next_page_token: str
    def __init__(self, individuals: _Optional[_Iterable[_Union[Individual, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseExperimentRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PauseExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class ResumeExperimentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeExperimentResponse(_message.Message):
    __slots__ = ("experiment",)
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    experiment: Experiment
    def __init__(self, experiment: _Optional[_Union[Experiment, _Mapping]] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("epoch", "accuracy", "train_loss", "seconds")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    accuracy: float
    train_loss: float
    seconds: float
    def __init__(self, epoch: _Optional[int] = ..., accuracy: _Optional[float] = ..., train_loss: _Optional[float] = ..., seconds: _Optional[float] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("individual_id", "token", "worker_id", "progress")
    INDIVIDUAL_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    individual_id: int
    token: str
    worker_id: str
    progress: Progress
    def __init__(self, individual_id: _Optional[int] = ..., token: _Optional[str] = ..., worker_id: _Optional[str] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("stop", "reason")
    STOP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    stop: bool
    reason: str
    def __init__(self, stop: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...
