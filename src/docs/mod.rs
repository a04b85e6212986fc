//! The workspace's documentation: markdown links and anchors (checked and
//! rewritten byte-preservingly), the generated model tables, model cards,
//! and the facts retirement advice compares.
//!
//! The scanner is our own small one rather than a full CommonMark parser:
//! a rewrite must know the exact bytes of each destination and leave all
//! others untouched, which renderers' event streams do not give cheaply.

pub mod blocks;
pub mod card;
pub mod catalog;
pub mod diff;
pub mod links;
pub mod retire;
pub mod scan;
pub mod slug;
pub mod tree;

pub use links::{check, move_file, Broken, LinkEdit, Report};
pub use tree::{Changeset, Disk, Kind, Scope, Source};
