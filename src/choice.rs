//! Named choices: the small enums a user picks by name (`--compression zstd`,
//! `INGOT_STAGING=disk`), each with its list of names, `Display` and `FromStr`, so that the
//! library needs no command-line parser and the binary can offer the names to clap.

/// An enum chosen by a lowercase name.
pub trait NamedChoice: Copy + Sized + 'static {
    /// Every variant with its name, in the order `--help` lists them.
    const CHOICES: &'static [(&'static str, Self)];

    /// The variant's name.
    fn name(self) -> &'static str;
}

/// An unknown name, and the names that are known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?}: expected one of {}", expected.join(", "))]
pub struct UnknownChoice {
    /// What was given.
    pub given: String,
    /// The names accepted.
    pub expected: Vec<&'static str>,
}

/// The variant of `T` named `s`.
pub fn parse<T: NamedChoice>(s: &str) -> Result<T, UnknownChoice> {
    T::CHOICES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| UnknownChoice {
            given: s.to_string(),
            expected: T::CHOICES.iter().map(|(n, _)| *n).collect(),
        })
}

/// Implement [`NamedChoice`], `Display` and `FromStr` for an enum from its names.
#[macro_export]
macro_rules! named_choice {
    ($ty:ty { $($name:literal => $variant:expr),+ $(,)? }) => {
        impl $crate::choice::NamedChoice for $ty {
            const CHOICES: &'static [(&'static str, Self)] = &[$(($name, $variant)),+];
            fn name(self) -> &'static str {
                <$ty as $crate::choice::NamedChoice>::CHOICES
                    .iter()
                    .find(|(_, v)| *v == self)
                    .map(|(n, _)| *n)
                    .unwrap_or("?")
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::choice::NamedChoice::name(*self))
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::choice::UnknownChoice;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::choice::parse(s)
            }
        }
    };
}
