//! Command-line handling shared by the examples (included with `#[path]`): `--flag value` and
//! `--flag=value` (lexopt), `--help` on stdout with exit status 0, and anything wrong reported on
//! stderr as one clear line, with exit status 2.

// Each example includes this file and uses the parts it needs.
#![allow(dead_code)]

use lexopt::Parser;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// What a command line asked for.
pub enum Command<T> {
    /// Run with these settings.
    Run(T),
    /// Print the help text and exit.
    Help,
}

/// Parses the process's arguments with `parse`. Prints `help` and exits with status 0 on
/// `--help`; prints `name: <what is wrong>` and a hint and exits with status 2 on a bad flag or
/// value.
pub fn parse_or_exit<T>(
    name: &str,
    help: &str,
    parse: impl FnOnce(&mut Parser) -> Result<Command<T>, lexopt::Error>,
) -> T {
    match parse(&mut Parser::from_env()) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            print!("{help}");
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            eprintln!("{name}: try --help");
            std::process::exit(2);
        }
    }
}

/// The value of `flag`, parsed as a number within `range`.
pub fn number<T>(
    parser: &mut Parser,
    flag: &str,
    range: RangeInclusive<T>,
) -> Result<T, lexopt::Error>
where
    T: FromStr + PartialOrd + Display,
{
    number_in(flag, &parser.value()?.to_string_lossy(), range)
}

/// `text` (what was given for `what`) parsed as a number within `range`.
pub fn number_in<T>(what: &str, text: &str, range: RangeInclusive<T>) -> Result<T, lexopt::Error>
where
    T: FromStr + PartialOrd + Display,
{
    match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "{what} wants a number from {} to {}, got {text:?}",
            range.start(),
            range.end()
        )
        .into()),
    }
}

/// The value of `flag`, one of `choices` (by name).
pub fn choice<T: Copy>(
    parser: &mut Parser,
    flag: &str,
    choices: &[(&str, T)],
) -> Result<T, lexopt::Error> {
    choice_in(flag, &parser.value()?.to_string_lossy(), choices)
}

/// `text` (what was given for `what`), one of `choices` (by name).
pub fn choice_in<T: Copy>(
    what: &str,
    text: &str,
    choices: &[(&str, T)],
) -> Result<T, lexopt::Error> {
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|&(_, value)| value)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            format!("{what} wants one of {}, got {text:?}", names.join(", ")).into()
        })
}
