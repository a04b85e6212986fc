//! User files, the lowest layer: YAML read with every node's line and
//! column, checked against JSON Schemas derived from the Rust types, and
//! findings tied to a place (`file:line:col`, a caret under the text, a
//! did-you-mean). Workflows, manifests, onboard.yaml and the docs all read
//! their files through it; it knows nothing of onboard itself.

pub mod diag;
pub mod document;
pub mod schema_check;
pub mod yaml;

pub use diag::Diagnostic;
pub use document::Document;
