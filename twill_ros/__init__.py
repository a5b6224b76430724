"""Twill-ROS: schedule compound-AI inference (CNNs, transformers, LLMs) across the GPU, DLAs
and CPU clusters of a Jetson under a power budget, as a ROS 2 package with a pure-Python core
and a digital twin for evaluation."""

__version__ = "0.1.0"
