"""Remove gradient-nonlinearity distortion from a Volume (work in progress: see the open issues)."""
