"""The detector: a TFLite model on the Edge TPU or the CPU, and its output decoders."""
