//! OCI image layouts and archives to bundles.
