"""Tests of skfairtune.backbone: timm model building and checkpoint loading."""
