"""Downstream tasks: OpenMMLab backbones, restoration, change detection."""
