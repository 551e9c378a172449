// Anchor for the shared LibTorch precompiled header (see PeftdHelpers.cmake).
