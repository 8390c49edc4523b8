"""EfficientNet-EdgeTPU-S (Gupta & Tan 2019) as a reference network: the block space's named genome's network.

One copy: the zoo builds ``efficientnet-edgetpu-s`` of the block space (``genome.edgetpu``; Flax model
``nets.edgetpu``), whose skeleton is S's stages after tensorflow/tpu ``models/official/efficientnet/edgetpu``
(Apache-2.0): fused inverted bottlenecks in the first three stages, MBConv after, ReLU, no
squeeze-and-excitation; 5.4 M parameters at 224x224 with 1000 classes.
"""

from __future__ import annotations

import flax.linen as nn

NAMED_GENOME = "efficientnet-edgetpu-s"


def efficientnet_edgetpu_s(num_classes: int = 1000) -> nn.Module:
    """The named genome's Flax network for ImageNet (the space's standard width and depth)."""
    import spaces
    from nets.build import build_model

    return build_model(spaces.named_genome(NAMED_GENOME), num_classes=num_classes, dataset="imagenet")
