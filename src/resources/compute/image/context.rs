//! The build context: the files the builder is sent — the context directory less what its
//! `.dockerignore` excludes, by Docker's rules — and the hash of exactly those files and the
//! Dockerfile, which is the image's tag. A file the builder never sees cannot change the tag;
//! every file it sees does.

use std::io;
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

/// One `.dockerignore` line: a glob over slash-separated paths relative to the context root;
/// `!` re-includes what an earlier line excluded.
#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without `!`.
    text: String,
    reinclude: bool,
    glob: GlobMatcher,
}

/// A parsed `.dockerignore`, matched as Docker (moby's patternmatcher) does: every line in
/// order, a path counts as matched when a line matches it or any of its parent
/// directories, and the last matching line decides.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// The `.dockerignore` at the context root; none means nothing is excluded.
    pub fn read(context: &Path) -> Result<Ignore, String> {
        match std::fs::read_to_string(context.join(".dockerignore")) {
            Ok(text) => Ignore::parse(&text).map_err(|e| format!(".dockerignore {e}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ignore::default()),
            Err(e) => Err(format!("reading .dockerignore: {e}")),
        }
    }

    /// Docker's reading of the file: lines trimmed, `#` comments and blank lines skipped,
    /// each pattern cleaned like a path (`./a/` is `a`, a leading `/` is dropped).
    pub fn parse(text: &str) -> Result<Ignore, String> {
        let mut patterns = Vec::new();
        for (n, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (reinclude, raw) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let text = clean(raw);
            let glob = GlobBuilder::new(&go_glob(&text))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("line {}: {line:?}: {e}", n + 1))?
                .compile_matcher();
            patterns.push(Pattern { text, reinclude, glob });
        }
        Ok(Ignore { patterns })
    }

    /// Whether `path` (relative, slash-separated) is left out of the context.
    pub fn excludes(&self, path: &str) -> bool {
        let parents: Vec<&str> = path.match_indices('/').map(|(i, _)| &path[..i]).collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An exclusion cannot change an excluded path, nor a re-inclusion an included one.
            if p.reinclude != excluded {
                continue;
            }
            if p.glob.is_match(path) || parents.iter().any(|dir| p.glob.is_match(dir)) {
                excluded = !p.reinclude;
            }
        }
        excluded
    }

    /// Whether an excluded directory must still be walked: Docker descends into one only when
    /// a `!` line names a path below it.
    fn may_reinclude_below(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.patterns.iter().any(|p| p.reinclude && format!("{}/", p.text).starts_with(&prefix))
    }
}

/// Go's `filepath.Clean` on a slash-separated pattern, then relative to the root.
fn clean(pattern: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in pattern.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !pattern.starts_with('/') {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

/// Go's glob syntax in globset's: `[^…]` negates a class in Go (`[!…]` in globset), and
/// braces are plain characters in Go (alternatives in globset).
fn go_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('!');
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '{' | '}' if !in_class => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// One entry of the context as the builder receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    File { path: String, mode: u32 },
    Dir { path: String, mode: u32 },
    Link { path: String, target: String },
}

#[cfg(test)]
impl Entry {
    pub fn path(&self) -> &str {
        match self {
            Entry::File { path, .. } | Entry::Dir { path, .. } | Entry::Link { path, .. } => path,
        }
    }
}

/// The entries of the context that `ignore` keeps, in path order (Docker's walk: an excluded
/// directory is skipped whole unless a `!` line names something below it).
pub fn entries(context: &Path, ignore: &Ignore) -> io::Result<Vec<Entry>> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, ignore: &Ignore, out: &mut Vec<Entry>) -> io::Result<()> {
        let mut children: Vec<_> = std::fs::read_dir(dir)?.collect::<io::Result<_>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let full = child.path();
            let rel = full.strip_prefix(root).unwrap_or(&full).to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&full)?;
            let excluded = ignore.excludes(&rel);
            let mode = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                if !excluded {
                    out.push(Entry::Dir { path: rel.clone(), mode });
                }
                if !excluded || ignore.may_reinclude_below(&rel) {
                    walk(root, &full, ignore, out)?;
                }
            } else if excluded {
                continue;
            } else if meta.file_type().is_symlink() {
                out.push(Entry::Link { path: rel, target: std::fs::read_link(&full)?.to_string_lossy().into_owned() });
            } else if meta.is_file() {
                out.push(Entry::File { path: rel, mode });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(context, context, ignore, &mut out)?;
    Ok(out)
}

/// First 16 hex digits of the SHA-256 over the Dockerfile and every entry the builder is
/// sent: path, kind, permission bits, and the content (or a link's target).
pub fn hash(context: &Path, dockerfile: &Path, entries: &[Entry]) -> io::Result<String> {
    let mut hash = Sha256::new();
    hash.update(b"dockerfile\0");
    hash.update(dockerfile.strip_prefix(context).unwrap_or(dockerfile).to_string_lossy().as_bytes());
    hash.update([0]);
    hash.update(std::fs::read(dockerfile)?);
    for entry in entries {
        match entry {
            Entry::File { path, mode } => {
                hash.update(format!("\0f\0{path}\0{mode:o}\0").as_bytes());
                let mut file = std::fs::File::open(context.join(path))?;
                io::copy(&mut file, &mut hash)?;
            }
            Entry::Dir { path, mode } => hash.update(format!("\0d\0{path}\0{mode:o}\0").as_bytes()),
            Entry::Link { path, target } => hash.update(format!("\0l\0{path}\0{target}\0").as_bytes()),
        }
    }
    Ok(hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// The build context of a source directory: the Cargo workspace root that holds it (the
/// books-api Dockerfile copies the workspace manifest), else the directory itself; and the
/// Dockerfile in the source directory.
pub fn locate(source: &Path) -> (PathBuf, PathBuf) {
    let context = source
        .ancestors()
        .find(|dir| dir.join("Cargo.lock").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| source.to_path_buf());
    (context, source.join("Dockerfile"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(ignore: &str, path: &str) -> bool {
        Ignore::parse(ignore).unwrap().excludes(path)
    }

    #[test]
    fn patterns_are_anchored_at_the_root_and_match_parents() {
        assert!(excluded("target", "target"));
        assert!(excluded("target", "target/debug/app"));
        assert!(!excluded("target", "api/target"), "no implicit **/ as in .gitignore");
        assert!(excluded("**/target", "api/target/x"));
        assert!(excluded("/state/", "state/books.json"));
        assert!(excluded("./docs", "docs/a.md"));
        assert!(excluded("*.md", "README.md"));
        assert!(!excluded("*.md", "docs/a.md"), "* stops at /");
        assert!(excluded("**/*.md", "docs/a.md"));
        assert!(excluded("a?c", "abc"));
        assert!(excluded("[^x]b", "ab") && !excluded("[^x]b", "xb"));
        assert!(excluded("{a}", "{a}"), "braces are literal, as in Go");
        assert!(!excluded("# a comment\n\n", "# a comment"));
    }

    #[test]
    fn the_last_matching_line_decides_and_bang_reincludes() {
        let allow = "*\n!Cargo.toml\n!src\n!api\napi/target\n";
        assert!(excluded(allow, "README.md"));
        assert!(excluded(allow, "tests/stack.rs"));
        assert!(!excluded(allow, "Cargo.toml"));
        assert!(!excluded(allow, "src/main.rs"));
        assert!(!excluded(allow, "api/src/main.rs"));
        assert!(excluded(allow, "api/target/release/x"));
        assert!(!excluded("*.txt\n!keep.txt", "keep.txt"));
        assert!(excluded("!keep.txt\n*.txt", "keep.txt"));
    }

    #[test]
    fn excluded_directories_are_skipped_unless_a_bang_line_names_something_below() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a/keep.txt", "a/drop.txt", "b/x.txt", "c.txt"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let ignore = Ignore::parse("a\nb\n!a/keep.txt").unwrap();
        let paths: Vec<String> = entries(dir.path(), &ignore).unwrap().iter().map(|e| e.path().to_string()).collect();
        assert_eq!(paths, ["a/keep.txt", "c.txt"]);
    }

    #[test]
    fn the_hash_moves_with_what_the_builder_is_sent_and_only_with_that() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY . /\n").unwrap();
        std::fs::write(ctx.join("app.txt"), "one").unwrap();
        std::fs::write(ctx.join("notes.log"), "one").unwrap();
        std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
        let tag = || {
            let ignore = Ignore::read(ctx).unwrap();
            hash(ctx, &ctx.join("Dockerfile"), &entries(ctx, &ignore).unwrap()).unwrap()
        };
        let first = tag();
        assert_eq!(first.len(), 16);
        assert_eq!(tag(), first, "same content, same tag");
        std::fs::write(ctx.join("notes.log"), "two").unwrap();
        assert_eq!(tag(), first, "an ignored file changes nothing");
        std::fs::write(ctx.join("app.txt"), "two").unwrap();
        let second = tag();
        assert_ne!(second, first, "a file the builder sees changes the tag");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(ctx.join("app.txt"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(tag(), second, "so does its mode (COPY keeps it)");
        let third = tag();
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY app.txt /\n").unwrap();
        assert_ne!(tag(), third, "and the Dockerfile");
    }
}
