"""From detections to stable "product added" events."""
