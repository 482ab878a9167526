//! Replacements for the few Rhai library functions that escape the sandbox's limits.
//!
//! Rhai checks operation counts, time and data sizes between operations. Two kinds of library
//! function get around that, and are replaced here (functions registered on the engine are found
//! before the library's):
//! - `replace` builds its whole result before the size check: `s.replace("a", s)` on a 64 KiB
//!   string allocates gigabytes in one call. The replacement computes the result's size first.
//! - `sort`, `sort_by`, `order`, `order_by` and `dedup` with a comparer ignore the comparer's
//!   errors, so a comparer stopped by the operation or time limit was simply called again, and the
//!   script went on to `allow()` long after its budget. The replacements end the script with the
//!   comparer's first error.

use std::cmp::Ordering;

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, ImmutableString, NativeCallContext, Position};

use super::api::{Reads, Registrar};

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// Registers the replacements (each reads only its arguments; a comparer named by a string is
/// judged like any call by name). `max_string_size` is `policy_limits.max_string_size` (0: none).
pub(super) fn register(api: &mut Registrar<'_>, max_string_size: usize) {
    api.function(
        "replace",
        Reads::Arguments,
        move |text: &mut ImmutableString, find: &str, substitute: &str| {
            replace(text, find, substitute, max_string_size)
        },
    )
    .function(
        "replace",
        Reads::Arguments,
        move |text: &mut ImmutableString, find: char, substitute: &str| {
            replace(
                text,
                find.encode_utf8(&mut [0; 4]),
                substitute,
                max_string_size,
            )
        },
    )
    .function(
        "replace",
        Reads::Arguments,
        move |text: &mut ImmutableString, find: &str, substitute: char| {
            replace(
                text,
                find,
                substitute.encode_utf8(&mut [0; 4]),
                max_string_size,
            )
        },
    );
    api.function(
        "sort",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| sort(&ctx, array, &comparer),
    )
    .function(
        "sort",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, name: &str| {
            sort(&ctx, array, &FnPtr::new(name)?)
        },
    )
    .function(
        "sort_by",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| sort(&ctx, array, &comparer),
    )
    .function(
        "order",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| order(&ctx, array, &comparer),
    )
    .function(
        "order_by",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| order(&ctx, array, &comparer),
    )
    .function(
        "dedup",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, comparer: FnPtr| dedup(&ctx, array, &comparer),
    )
    .function(
        "dedup",
        Reads::Arguments,
        |ctx: NativeCallContext, array: &mut Array, name: &str| {
            dedup(&ctx, array, &FnPtr::new(name)?)
        },
    );
}

/// `text.replace(find, substitute)`, refused before allocating when the result would be larger
/// than `max` bytes.
fn replace(text: &mut ImmutableString, find: &str, substitute: &str, max: usize) -> Outcome<()> {
    // An empty pattern matches before every character and at the end.
    let matches = if find.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(find).count()
    };
    let growth = substitute.len().saturating_sub(find.len());
    let result_len = text.len().saturating_add(matches.saturating_mul(growth));
    if max > 0 && result_len > max {
        return Err(
            EvalAltResult::ErrorDataTooLarge("Length of string".into(), Position::NONE).into(),
        );
    }
    *text = text.replace(find, substitute).into();
    Ok(())
}

/// Sorts with a script comparer (a number: negative, zero, positive; or a bool: "before"); the
/// comparer's first error ends the sort and the script.
fn sort(ctx: &NativeCallContext, array: &mut Array, comparer: &FnPtr) -> Outcome<()> {
    let mut failure: Option<Box<EvalAltResult>> = None;
    let sorted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        array.sort_by(|x, y| {
            if failure.is_some() {
                return Ordering::Equal;
            }
            match compare(ctx, comparer, x, y) {
                Ok(ordering) => ordering,
                Err(err) => {
                    failure = Some(err);
                    Ordering::Equal
                }
            }
        });
    }));
    if let Some(err) = failure {
        return Err(err);
    }
    sorted.map_err(|_| {
        EvalAltResult::ErrorRuntime(
            "the comparer does not define an order (sort)".into(),
            Position::NONE,
        )
        .into()
    })
}

fn compare(
    ctx: &NativeCallContext,
    comparer: &FnPtr,
    x: &Dynamic,
    y: &Dynamic,
) -> Outcome<Ordering> {
    let answer = comparer.call_raw(ctx, None, [x.clone(), y.clone()])?;
    if let Ok(number) = answer.as_int() {
        return Ok(number.cmp(&0));
    }
    if let Ok(before) = answer.as_bool() {
        return Ok(if before {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    Err(EvalAltResult::ErrorRuntime(
        format!(
            "the sort comparer returned {}, not a number or a bool",
            answer.type_name()
        )
        .into(),
        Position::NONE,
    )
    .into())
}

/// A sorted copy (`order`, `order_by`).
fn order(ctx: &NativeCallContext, array: &mut Array, comparer: &FnPtr) -> Outcome<Array> {
    let mut copy = array.clone();
    sort(ctx, &mut copy, comparer)?;
    Ok(copy)
}

/// Removes consecutive elements the comparer calls equal; its first error ends the script.
fn dedup(ctx: &NativeCallContext, array: &mut Array, comparer: &FnPtr) -> Outcome<()> {
    let mut failure: Option<Box<EvalAltResult>> = None;
    array.dedup_by(|x, y| {
        if failure.is_some() {
            return false;
        }
        match comparer.call_raw(ctx, None, [y.clone(), x.clone()]) {
            Ok(answer) => answer.as_bool().unwrap_or(false),
            Err(err) => {
                failure = Some(err);
                false
            }
        }
    });
    failure.map_or(Ok(()), Err)
}
