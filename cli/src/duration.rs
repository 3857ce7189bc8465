//! The one duration grammar of every option that takes a duration (`--expires-in`,
//! `--retain`, `--activate-in`): a whole number followed by `s`, `m`, `h` or `d`. A bare
//! number keeps the unit the option always had (seconds for `--expires-in`, minutes for
//! `--retain`), so existing scripts mean what they meant. Limits are checked here, before
//! anything is sent, and stated in the unit the user typed.

/// A unit of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `s`.
    Seconds,
    /// `m`.
    Minutes,
    /// `h`.
    Hours,
    /// `d`.
    Days,
}

impl Unit {
    const ALL: [Unit; 4] = [Unit::Days, Unit::Hours, Unit::Minutes, Unit::Seconds];

    fn from_suffix(suffix: &str) -> Option<Self> {
        match suffix {
            "s" => Some(Self::Seconds),
            "m" => Some(Self::Minutes),
            "h" => Some(Self::Hours),
            "d" => Some(Self::Days),
            _ => None,
        }
    }

    fn seconds(self) -> u64 {
        match self {
            Self::Seconds => 1,
            Self::Minutes => 60,
            Self::Hours => 3600,
            Self::Days => 86_400,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Seconds => "s",
            Self::Minutes => "m",
            Self::Hours => "h",
            Self::Days => "d",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Seconds => "seconds",
            Self::Minutes => "minutes",
            Self::Hours => "hours",
            Self::Days => "days",
        }
    }
}

/// What one option accepts.
#[derive(Debug, Clone, Copy)]
pub struct Grammar {
    /// The unit of a bare number.
    pub bare: Unit,
    /// Whether zero is a valid value (`--retain 0`: stop at once).
    pub zero: bool,
    /// The longest value, in seconds.
    pub max_secs: u64,
    /// The longest value as people say it (`30 days`).
    pub max_text: &'static str,
}

/// `--expires-in`: bare seconds, more than zero, at most 10 years (of 366 days), as the
/// server accepts.
pub const EXPIRES_IN: Grammar = Grammar {
    bare: Unit::Seconds,
    zero: false,
    max_secs: 10 * 366 * 86_400,
    max_text: "10 years",
};

/// `--retain`: bare minutes, zero allowed, at most 30 days (the keys service's limit).
pub const RETAIN: Grammar = Grammar {
    bare: Unit::Minutes,
    zero: true,
    max_secs: 30 * 86_400,
    max_text: "30 days",
};

/// `signing-key add --activate-in`: bare seconds, zero allowed, at most a day.
pub const ACTIVATE_IN: Grammar = Grammar {
    bare: Unit::Seconds,
    zero: true,
    max_secs: 86_400,
    max_text: "1 day",
};

impl Grammar {
    /// Parses `input` to seconds; the error says what is accepted, in the unit typed.
    pub fn parse(&self, input: &str) -> Result<u64, String> {
        let text = input.trim();
        let invalid = || {
            format!(
                "invalid duration {input:?}: use a whole number followed by s, m, h or d (e.g. \
                 90s, 15m, 12h, 30d); a bare number is {}",
                self.bare.name()
            )
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(split);
        if digits.is_empty() {
            return Err(invalid());
        }
        let unit = match suffix.trim() {
            "" => self.bare,
            other => Unit::from_suffix(other).ok_or_else(invalid)?,
        };
        let value: u64 = digits.parse().map_err(|_| self.too_long(input, unit))?;
        if value == 0 && !self.zero {
            return Err(format!(
                "invalid duration {input:?}: it must be greater than zero"
            ));
        }
        value
            .checked_mul(unit.seconds())
            .filter(|secs| *secs <= self.max_secs)
            .ok_or_else(|| self.too_long(input, unit))
    }

    /// The limit in `unit`: `at most 43200 minutes (30 days)`.
    fn too_long(&self, input: &str, unit: Unit) -> String {
        let max = self.max_secs / unit.seconds();
        let name = if max == 1 {
            unit.name().trim_end_matches('s')
        } else {
            unit.name()
        };
        format!(
            "invalid duration {input:?}: at most {max} {name} ({})",
            self.max_text
        )
    }
}

/// `--expires-in` for clap: seconds.
pub fn expires_in(input: &str) -> Result<u64, String> {
    EXPIRES_IN.parse(input)
}

/// `--retain` for clap: seconds.
pub fn retain(input: &str) -> Result<u64, String> {
    RETAIN.parse(input)
}

/// `--activate-in` for clap: seconds.
pub fn activate_in(input: &str) -> Result<u32, String> {
    ACTIVATE_IN
        .parse(input)
        .and_then(|secs| u32::try_from(secs).map_err(|e| e.to_string()))
}

/// Seconds in the largest unit that divides them evenly: `90s`, `15m`, `2h`, `30d`.
pub fn human(secs: u64) -> String {
    let unit = Unit::ALL
        .into_iter()
        .find(|u| secs > 0 && secs.is_multiple_of(u.seconds()))
        .unwrap_or(Unit::Seconds);
    format!("{}{}", secs / unit.seconds(), unit.suffix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_takes_units_and_a_bare_number_keeps_its_meaning() {
        for grammar in [EXPIRES_IN, RETAIN, ACTIVATE_IN] {
            assert_eq!(grammar.parse("90s"), Ok(90));
            assert_eq!(grammar.parse("15m"), Ok(900));
            assert_eq!(grammar.parse(" 1h "), Ok(3600));
        }
        assert_eq!(EXPIRES_IN.parse("2d"), Ok(172_800));
        assert_eq!(RETAIN.parse("2d"), Ok(172_800));
        // A bare number: seconds for --expires-in and --activate-in, minutes for --retain.
        assert_eq!(EXPIRES_IN.parse("3600"), Ok(3600));
        assert_eq!(ACTIVATE_IN.parse("300"), Ok(300));
        assert_eq!(RETAIN.parse("60"), Ok(3600));
        assert_eq!(RETAIN.parse("0"), Ok(0));
        assert_eq!(EXPIRES_IN.parse("3660d"), Ok(EXPIRES_IN.max_secs));
    }

    #[test]
    fn limits_are_stated_in_the_unit_typed() {
        let error = RETAIN.parse("50000").expect_err("too long");
        assert!(error.contains("at most 43200 minutes (30 days)"), "{error}");
        let error = RETAIN.parse("800h").expect_err("too long");
        assert!(error.contains("at most 720 hours (30 days)"), "{error}");
        let error = RETAIN.parse("31d").expect_err("too long");
        assert!(error.contains("at most 30 days (30 days)"), "{error}");
        let error = EXPIRES_IN.parse("3661d").expect_err("too long");
        assert!(error.contains("at most 3660 days (10 years)"), "{error}");
        let error = EXPIRES_IN
            .parse("99999999999999999999999")
            .expect_err("overflow");
        assert!(error.contains("at most 316224000 seconds"), "{error}");
        let error = ACTIVATE_IN.parse("2d").expect_err("too long");
        assert!(error.contains("at most 1 day (1 day)"), "{error}");
    }

    #[test]
    fn zero_and_garbage_are_refused_clearly() {
        for zero in ["0", "0s", "0d", "000m"] {
            let error = EXPIRES_IN.parse(zero).expect_err(zero);
            assert!(error.contains("greater than zero"), "{zero}: {error}");
        }
        for garbage in [
            "",
            "d",
            "-5m",
            "1.5h",
            "10 minutes",
            "1w",
            "1h30m",
            "abc",
            "5x",
            "+5",
        ] {
            for (grammar, bare) in [(EXPIRES_IN, "seconds"), (RETAIN, "minutes")] {
                let error = grammar.parse(garbage).expect_err(garbage);
                assert!(
                    error.contains("invalid duration")
                        && error.contains("30d")
                        && error.contains(&format!("a bare number is {bare}")),
                    "{garbage}: {error}"
                );
            }
        }
    }

    #[test]
    fn durations_print_in_the_largest_even_unit() {
        assert_eq!(human(90), "90s");
        assert_eq!(human(900), "15m");
        assert_eq!(human(7200), "2h");
        assert_eq!(human(2_592_000), "30d");
        assert_eq!(human(0), "0s");
    }
}
