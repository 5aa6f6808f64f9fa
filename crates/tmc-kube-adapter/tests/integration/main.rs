//! Integration tests: the real controllers and a real `kube::Client` against an in-process API
//! double over HTTP (see `support/apiserver.rs`), and the checked-in CRDs.

mod binary;
mod controller;
mod crds;
mod deploy;
mod support;
