//! Root package holding the integration tests in tests/.
