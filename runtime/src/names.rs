//! Options named on command lines and in JSON: one macro gives a fieldless enum its names, so that
//! parsing, printing and the list in `--help` come from one table.

/// For a fieldless enum: `NAMES` (what [`str::parse`] takes, as `as_str` gives them), `as_str`,
/// `FromStr` (extra spellings after `|`; an unknown name says which it takes) and `Display`.
///
/// ```ignore
/// named_enum!(Fit, "fit", { Crop => "crop", Stretch => "stretch" | "squeeze" });
/// ```
macro_rules! named_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        impl $ty {
            /// The names [`str::parse`] takes, as `as_str` gives them.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($name $(| $alias)* => Ok($ty::$variant),)+
                    _ => Err(format!("unknown {} `{s}` (use {})", $what, Self::NAMES.join(", "))),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use named_enum;
