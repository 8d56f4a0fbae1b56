"""Tests of skfairtune.distributed and skfairtune.worker: parallel and cluster search."""
