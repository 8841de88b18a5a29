//! A component that exports nothing the host asks for: the host must refuse
//! to run it, with an error that says the interface is missing.

/// Never called; a component needs some code.
pub fn answer() -> u32 {
    42
}
