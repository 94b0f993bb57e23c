//! Crash-point tests of durability: the disk log under torn tails and bit
//! flips (`log_damage`), the hub under random operations with restarts
//! (`hub_restart`), and regression tests of bugs they found (`regressions`).
//! The engine's own property tests live in `queue::engine`.

mod regressions;
