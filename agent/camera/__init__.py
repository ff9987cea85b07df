"""Frame sources: picamera2, v4l2 webcams, video files, image folders, synthetic scenes."""
