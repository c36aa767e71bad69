"""Deployment: ONNX export of vmamba-mm configs and an onnxruntime runner (``onnx``).

Needs mmengine and the task package of the config, onnx, onnxscript and onnxruntime; imported
only by the deployment and benchmark tools, never by ``import vmamba_mm``.
"""
