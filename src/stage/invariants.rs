//! The golden image's cleanup invariants, enforced by ingot after the recipe's cleanup scripts.
