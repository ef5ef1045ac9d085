//! The shape of the source, as the README's "Layout of the source" states it: every module
//! imports only from its own layer or below, no two top-level modules import each other, no
//! file in src/ holds more than 800 lines before its tests, and no function is longer than 150
//! lines. A failure names the file, the line and what to do.
#![allow(clippy::restriction)] // tests: a panic is a failed test (the crate's panic lints are for src/)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 150;

/// The layers, lowest first (README: "Layout of the source").
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("finding", 0),
    ("bytes", 0),
    ("units", 0),
    ("disk", 1),
    ("vhd", 2),
    ("mbr", 2),
    ("gpt", 2),
    ("fs", 2),
    ("regf", 2),
    ("image", 3),
    ("table", 3),
    ("info", 3),
    ("esp", 4),
    ("shrink", 4),
    ("checksum", 4),
    ("boot", 5),
    ("convert", 6),
    ("upload", 6),
    ("cli", 7),
];

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src/ readable") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// The file's lines before its `#[cfg(test)]` module, and its top-level module name.
fn code(path: &Path) -> (String, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rel = path.strip_prefix(&src).expect("under src/");
    let first = rel.components().next().expect("a component");
    let module = first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string();
    let text = std::fs::read_to_string(path).expect("source readable");
    let lines = text
        .lines()
        .take_while(|l| l.trim_start() != "#[cfg(test)]")
        .map(str::to_string)
        .collect();
    (module, lines)
}

/// Top-level modules named by `crate::X` in the lines (comments left out).
fn imports(lines: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in lines {
        let l = l.split("//").next().unwrap_or("");
        let mut rest = l;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(stripped) = rest.strip_prefix('{') {
                for name in stripped.split([',', '}']) {
                    let name = name.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        out.insert(name.to_string());
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_downwards_and_never_each_other() {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for f in sources() {
        let (module, lines) = code(&f);
        if module == "main" || module == "lib" {
            continue;
        }
        let Some(&own) = layer.get(module.as_str()) else {
            problems.push(format!(
                "src/{module}: not in the layer table (tests/structure.rs, README)"
            ));
            continue;
        };
        for used in imports(&lines) {
            if used == module {
                continue;
            }
            match layer.get(used.as_str()) {
                Some(&l) if l > own => problems.push(format!(
                    "{}: {module} (layer {own}) imports {used} (layer {l}), a higher layer",
                    f.display()
                )),
                None => {}
                _ => {}
            }
            uses.entry(module.clone()).or_default().insert(used);
        }
    }
    for (a, bs) in &uses {
        for b in bs {
            if a < b && uses.get(b).is_some_and(|x| x.contains(a)) {
                problems.push(format!("{a} and {b} import each other"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn files_and_functions_stay_small() {
    let mut problems = Vec::new();
    for f in sources() {
        let (_, lines) = code(&f);
        if lines.len() > MAX_FILE_LINES {
            problems.push(format!(
                "{}: {} lines before its tests (at most {MAX_FILE_LINES}): split it by what it holds",
                f.display(),
                lines.len()
            ));
        }
        for (start, name, len) in long_functions(&lines) {
            problems.push(format!(
                "{}:{}: fn {name} is {len} lines (at most {MAX_FN_LINES})",
                f.display(),
                start + 1
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Functions longer than [`MAX_FN_LINES`]: (first line, name, lines). Braces are counted outside
/// string and char literals and comments, which is enough for rustfmt-formatted code.
fn long_functions(lines: &[String]) -> Vec<(usize, String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = fn_name(&lines[i]) else {
            i += 1;
            continue;
        };
        let (mut depth, mut opened, mut j) = (0i64, false, i);
        while j < lines.len() {
            for c in code_chars(&lines[j]) {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth == 0) || (!opened && lines[j].trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        let len = j - i + 1;
        if opened && len > MAX_FN_LINES {
            out.push((i, name, len));
        }
        i = if opened { j + 1 } else { i + 1 };
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let mut t = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        t = t.strip_prefix(prefix).unwrap_or(t);
    }
    let rest = t.strip_prefix("fn ")?;
    Some(
        rest.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect(),
    )
}

/// The characters of a line outside string literals, char literals and `//` comments.
fn code_chars(line: &str) -> Vec<char> {
    let mut out = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let (mut i, mut in_str) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        if in_str {
            match c {
                '\\' => i += 1,
                '"' => in_str = false,
                _ => {}
            }
        } else if c == '"' {
            in_str = true;
        } else if c == '/' && chars.get(i + 1) == Some(&'/') {
            break;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 2; // 'x'
        } else if c == '\'' && chars.get(i + 1) == Some(&'\\') {
            while i + 1 < chars.len() && chars[i + 1] != '\'' {
                i += 1;
            }
            i += 1; // '\n', '\''
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

#[test]
fn the_checker_sees_what_it_must() {
    let long: Vec<String> = std::iter::once("pub fn big() {".to_string())
        .chain((0..MAX_FN_LINES).map(|_| "    let x = \"}\"; // }".to_string()))
        .chain(std::iter::once("}".to_string()))
        .collect();
    assert_eq!(long_functions(&long).len(), 1, "a long function is found");
    let short = ["fn small() {", "    '{'", "}"].map(String::from);
    assert!(long_functions(&short).is_empty(), "a short function is not");
    let lines = vec!["use crate::{disk::Disk, error::Error};".to_string()];
    let got = imports(&lines);
    assert!(got.contains("disk") && got.contains("error"), "{got:?}");
}
