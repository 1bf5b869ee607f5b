//! Joining a running container (for `husk exec`).
