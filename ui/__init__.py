"""Presentation over plain data: the terminal status view, replay plots and CSV/JSON exports."""
