//! Property tests of the engine against a reference model. PLACEHOLDER.
