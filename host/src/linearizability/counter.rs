//! The model of the `counter` guest (`guests/counter-logic`).
//!
//! The grammar mirrors `counter_logic::Command::parse`; a test runs both on
//! the same commands to keep them in step.

use super::history::Reply;
use super::model::Model;

/// The `counter` guest as a [`Model`]: one `i64`. Not partitionable.
#[derive(Debug, Clone, Copy, Default)]
pub struct CounterModel;

/// A parsed counter command or query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterInput {
    /// `add N`
    Add(i64),
    /// `sub N`
    Sub(i64),
    /// `set N`
    Set(i64),
    /// `reset`
    Reset,
    /// `get` (or an empty query)
    Get,
}

/// A parsed counter answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOutput {
    /// The value after the command.
    Value(i64),
    /// The command overflowed and changed nothing.
    Overflow,
}

impl Model for CounterModel {
    type State = i64;
    type Input = CounterInput;
    type Output = CounterOutput;

    fn init(&self) -> i64 {
        0
    }

    fn parse_input(&self, text: &str) -> Result<CounterInput, String> {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let mut number = || {
            words
                .next()
                .and_then(|word| word.parse::<i64>().ok())
                .ok_or_else(|| format!("`{verb}` needs an i64: {text:?}"))
        };
        let input = match verb {
            "add" => CounterInput::Add(number()?),
            "sub" => CounterInput::Sub(number()?),
            "set" => CounterInput::Set(number()?),
            "reset" => CounterInput::Reset,
            "get" | "" => CounterInput::Get,
            _ => return Err(format!("not a counter command: {text:?}")),
        };
        match words.next() {
            None => Ok(input),
            Some(extra) => Err(format!("unexpected `{extra}` in {text:?}")),
        }
    }

    fn parse_output(&self, _input: &CounterInput, reply: &Reply) -> Result<CounterOutput, String> {
        match reply {
            Ok(text) => text
                .trim()
                .parse()
                .map(CounterOutput::Value)
                .map_err(|error| format!("answer {text:?} is not an i64: {error}")),
            // The only error a parsed command can meet.
            Err(_) => Ok(CounterOutput::Overflow),
        }
    }

    fn step(&self, state: &i64, input: &CounterInput) -> (i64, CounterOutput) {
        let next = match *input {
            CounterInput::Add(n) => state.checked_add(n),
            CounterInput::Sub(n) => state.checked_sub(n),
            CounterInput::Set(n) => Some(n),
            CounterInput::Reset => Some(0),
            CounterInput::Get => Some(*state),
        };
        match next {
            Some(value) => (value, CounterOutput::Value(value)),
            None => (*state, CounterOutput::Overflow),
        }
    }

    fn is_read_only(&self, input: &CounterInput) -> bool {
        *input == CounterInput::Get
    }

    fn describe_output(&self, output: &CounterOutput) -> String {
        match output {
            CounterOutput::Value(value) => value.to_string(),
            CounterOutput::Overflow => "overflow error".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model and the guest's own logic agree on every command, answer
    /// and error.
    #[test]
    fn t10_agrees_with_counter_logic() {
        let commands = [
            "add 5",
            "sub 7",
            " add   -3 ",
            "get",
            "set 9223372036854775807",
            "add 1",
            "sub -1",
            "get",
            "reset",
            "sub 9223372036854775807",
            "sub 2",
            "set 12",
        ];
        let mut guest = counter_logic::Counter::default();
        let mut state = CounterModel.init();
        for command in commands {
            let reply = guest.apply(command.as_bytes()).map(|bytes| {
                String::from_utf8(bytes).expect("the counter answers in decimal text")
            });
            let input = CounterModel.parse_input(command).expect("valid command");
            let recorded = CounterModel
                .parse_output(&input, &reply)
                .expect("a counter answer");
            let (next, expected) = CounterModel.step(&state, &input);
            assert_eq!(expected, recorded, "{command:?}");
            state = next;
            assert_eq!(state, guest.value(), "{command:?}");
        }
        for bad in ["add", "add x", "get 1", "mul 2", "add 1 2"] {
            assert!(CounterModel.parse_input(bad).is_err(), "{bad:?}");
            assert!(
                counter_logic::Command::parse(bad).is_err(),
                "{bad:?} is refused by the guest too"
            );
        }
    }
}
