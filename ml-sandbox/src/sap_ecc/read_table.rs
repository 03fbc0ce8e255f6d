//! `RFC_READ_TABLE` as the API notes describe it.

use std::collections::BTreeMap;

use super::ddic::{self, FieldDef};
use super::select::{self, Refusal};
use super::soap::Param;
use super::{Answer, Inner, Shared};

/// The width of `DATA-WA`.
pub(super) const ROW_BUFFER: usize = 512;

fn fnv(seed: u64, s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Formats one value into its output slot: characters left-aligned, numbers right-aligned
/// with a trailing minus, padded to the width in UTF-16 code units (a Unicode system);
/// characters the Latin-1 code page cannot hold become `#` when the system is not Unicode.
fn slot(def: &FieldDef, value: &str, latin1: bool) -> String {
    let mut v: String = match def.typ {
        'P' => {
            let v = value.trim();
            match v.strip_prefix('-') {
                Some(abs) => format!("{abs}-"),
                None if v.is_empty() => "0".to_owned(),
                None => v.to_owned(),
            }
        }
        _ => value.to_owned(),
    };
    if latin1 {
        v = v
            .chars()
            .map(|c| if u32::from(c) <= 0xFF { c } else { '#' })
            .collect();
    }
    let mut units: Vec<u16> = v.encode_utf16().collect();
    units.truncate(def.len);
    let pad = def.len - units.len();
    let text = String::from_utf16_lossy(&units);
    if def.typ == 'P' {
        format!("{}{text}", " ".repeat(pad))
    } else {
        format!("{text}{}", " ".repeat(pad))
    }
}

fn n6(n: usize) -> String {
    format!("{n:06}")
}

/// Answers one call.
pub(crate) fn call(shared: &Shared, inner: &Inner, params: &BTreeMap<String, Param>) -> Answer {
    const FM: &str = "RFC_READ_TABLE";
    let exception = |name: &str, text: &str| Answer::Exception(name.to_owned(), text.to_owned());
    let table = params
        .get("QUERY_TABLE")
        .map_or("", Param::text)
        .trim()
        .to_ascii_uppercase();
    let Some(all) = ddic::table(&table) else {
        return exception(
            "TABLE_NOT_AVAILABLE",
            &format!("Table {table} is not available"),
        );
    };
    let kept: Vec<FieldDef> = all
        .iter()
        .filter(|d| !inner.removed.contains(&format!("{table}-{}", d.name)))
        .copied()
        .collect();
    let defs = kept.as_slice();
    if shared.empty_raises {
        let client_field = ddic::client_field(all);
        let empty = inner.tables.get(table.as_str()).is_none_or(|t| {
            !t.values()
                .any(|r| r.get(client_field).is_some_and(|c| *c == shared.client))
        });
        if empty {
            return exception(
                "TABLE_WITHOUT_DATA",
                &format!("Table {table} contains no data"),
            );
        }
    }
    if inner.denied.contains(&table) {
        return exception(
            "NOT_AUTHORIZED",
            &format!("No authorization for table {table} (S_TABU_DIS)"),
        );
    }
    let delimiter = params.get("DELIMITER").map_or("", Param::text);
    let delimiter = delimiter.chars().next().filter(|c| *c != ' ');
    let no_data = params.get("NO_DATA").map_or("", Param::text).trim() == "X";
    let number = |name: &str| -> Result<usize, Answer> {
        let t = params.get(name).map_or("", Param::text).trim();
        if t.is_empty() {
            return Ok(0);
        }
        t.parse::<usize>().map_err(|_| {
            Answer::SystemFailure(format!(
                "CONVT_NO_NUMBER: `{t}` cannot be read as {name} (INT4)"
            ))
        })
    };
    let (skips, rowcount) = match (number("ROWSKIPS"), number("ROWCOUNT")) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(a), _) | (_, Err(a)) => return a,
    };
    // FIELDS: the requested names (empty: every column).
    let wanted: Vec<String> = params
        .get("FIELDS")
        .map_or(&[][..], Param::rows)
        .iter()
        .map(|r| {
            r.get("FIELDNAME")
                .map_or("", |s| s.trim())
                .to_ascii_uppercase()
        })
        .collect();
    let mut selected: Vec<&FieldDef> = Vec::new();
    if wanted.is_empty() {
        selected.extend(defs.iter());
    } else {
        for w in &wanted {
            match defs.iter().find(|d| d.name == w) {
                Some(d) => selected.push(d),
                None => {
                    return exception("FIELD_NOT_VALID", &format!("Field {w} is not in {table}"));
                }
            }
        }
    }
    let mut offset = 0;
    let mut layout = Vec::new();
    for d in &selected {
        layout.push(BTreeMap::from([
            ("FIELDNAME".to_owned(), d.name.to_owned()),
            ("OFFSET".to_owned(), n6(offset)),
            ("LENGTH".to_owned(), n6(d.len)),
            ("TYPE".to_owned(), d.typ.to_string()),
            ("FIELDTEXT".to_owned(), d.text.to_owned()),
        ]));
        offset += d.len + usize::from(delimiter.is_some());
    }
    let width = offset - usize::from(delimiter.is_some() && !selected.is_empty());
    let mut out: Vec<(&str, Param)> = Vec::new();
    let sent = |name: &str| params.contains_key(name);
    if no_data {
        // Metadata only: the width is not checked.
        if sent("DATA") {
            out.push(("DATA", Param::Table(Vec::new())));
        }
        if sent("FIELDS") {
            out.push(("FIELDS", Param::Table(layout)));
        }
        if let Some(o) = params.get("OPTIONS") {
            out.push(("OPTIONS", o.clone()));
        }
        return Answer::Ok(FM, out);
    }
    if width > ROW_BUFFER {
        return exception(
            "DATA_BUFFER_EXCEEDED",
            &format!("Selected fields are {width} characters wide; DATA-WA holds {ROW_BUFFER}"),
        );
    }
    let lines: Vec<String> = params
        .get("OPTIONS")
        .map_or(&[][..], Param::rows)
        .iter()
        .map(|r| {
            // OPTIONS-TEXT is CHAR72: anything longer is cut.
            let t = r.get("TEXT").map_or("", String::as_str);
            t.chars().take(72).collect()
        })
        .collect();
    let cond = match select::parse(&lines, defs) {
        Ok(c) => c,
        Err(Refusal::Option(m)) => return exception("OPTION_NOT_VALID", &m),
        Err(Refusal::Dump(m)) => return Answer::SystemFailure(m),
    };
    let client_field = ddic::client_field(defs);
    let rows = inner.tables.get(table.as_str());
    let mut hits: Vec<(u64, &BTreeMap<String, String>)> = rows
        .into_iter()
        .flat_map(|t| t.iter())
        .filter(|(_, r)| r.get(client_field).is_some_and(|c| *c == shared.client))
        .filter(|(_, r)| select::matches(&cond, defs, r))
        .enumerate()
        .map(|(i, (k, r))| {
            // Table rows are kept by key: their position is key order.
            let at = if shared.key_order {
                i as u64
            } else {
                fnv(shared.seed, k)
            };
            (at, r)
        })
        .collect();
    // No ORDER BY: rows come in the database's order, which is neither key nor time.
    hits.sort_by_key(|(h, _)| *h);
    let take = if rowcount == 0 { usize::MAX } else { rowcount };
    let take = shared.silent_cap.map_or(take, |cap| take.min(cap));
    // Skipped rows are read too: they count against memory.
    let read = hits.len().min(skips.saturating_add(take));
    if read.saturating_mul(width.max(1)) > shared.memory_bytes {
        return Answer::SystemFailure(
            "TSV_TNEW_PAGE_ALLOC_FAILED: No more storage space available for extending an internal table"
                .into(),
        );
    }
    let latin1 = shared.latin1;
    let data: Vec<BTreeMap<String, String>> = hits
        .iter()
        .skip(skips)
        .take(take)
        .map(|(_, r)| {
            let mut wa = String::new();
            for (i, d) in selected.iter().enumerate() {
                if i > 0
                    && let Some(c) = delimiter
                {
                    wa.push(c);
                }
                wa.push_str(&slot(d, r.get(d.name).map_or("", String::as_str), latin1));
            }
            // The XML answer drops trailing blanks of character data.
            BTreeMap::from([("WA".to_owned(), wa.trim_end().to_owned())])
        })
        .collect();
    if sent("DATA") {
        out.push(("DATA", Param::Table(data)));
    }
    if sent("FIELDS") {
        out.push(("FIELDS", Param::Table(layout)));
    }
    if let Some(o) = params.get("OPTIONS") {
        out.push(("OPTIONS", o.clone()));
    }
    Answer::Ok(FM, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_padded_by_utf16_units() {
        let name = FieldDef {
            name: "NAME1",
            typ: 'C',
            len: 6,
            key: false,
            text: "",
        };
        // 𝔄 is two UTF-16 code units.
        assert_eq!(slot(&name, "𝔄b", false), "𝔄b   ");
        assert_eq!(slot(&name, "Ünïcode", true), "Ünïcod");
        assert_eq!(slot(&name, "東京", true), "##    ");
        let amount = FieldDef {
            name: "RMWWR",
            typ: 'P',
            len: 10,
            key: false,
            text: "",
        };
        assert_eq!(slot(&amount, "-12.50", false), "    12.50-");
        assert_eq!(slot(&amount, "7.00", false), "      7.00");
    }
}
