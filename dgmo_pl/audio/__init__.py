"""Audio input/output and the spectrogram front end of the AudioLDM family."""
