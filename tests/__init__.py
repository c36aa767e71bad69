"""The test suite, a regular package so that ``tests.paths`` and ``tests.official`` resolve here.

mmsegmentation pulls in model-index, which installs an unrelated top-level ``tests`` package into
site-packages; as a namespace package this folder would lose to it.
"""
