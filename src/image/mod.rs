//! Reading images back: what `bakery inspect` shows, and what later checks build on.

pub mod inspect;
pub mod pack;
pub mod read;

pub use inspect::inspect;
