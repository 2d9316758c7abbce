//! Claims: an object is deleted only when every claim on it has ended.
//!
//! One object can be wanted by several things at once: it is a recording
//! under the rules that match it, the sidecar or companion of every recording
//! that names it, and under every hold whose selectors cover it. `decide`
//! judges one recording at a time, so a delete decision says only that *this*
//! recording's claim has ended. This module finds, across a whole store's
//! plan, the objects a delete decision would remove although something else
//! still keeps them.
//!
//! Every item that is not deleted records a claim on its own key and on the
//! keys of its sidecars and companions; every delete item records a need for
//! each object it would remove; every listed object that is not a recording
//! candidate (a sidecar, a companion, an object no rule matches) records
//! that it exists, with its size and e_tag. All go through an external merge
//! sort (runs of [`RUN`] records in memory, spilled to unnamed temporary
//! files), so that memory stays flat at millions of objects; a merge then
//! pairs each need with the first claim on the same key, and each companion
//! need with the listing's entry of it, and a second sort hands the blocked
//! needs and the listed companions back in plan order, to be applied to the
//! delete items as they are read back from the spool.
//!
//! A companion is rendered from a template and may not exist: it is deleted
//! only when the scan's listing showed it (see [`Claims::need_listed`]), so
//! that no second listing is needed to find it and a certificate never names
//! an object that did not exist.
//!
//! Keys are compared by a 16-byte SHA-256 prefix of `store\0key`: a collision
//! (never seen at 2^-64 per pair) can only keep an object, never delete one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};

use chrono::{DateTime, Utc};
use object_store::ObjectMeta;
use sha2::{Digest, Sha256};

/// Records held in memory before a sorted run is spilled to disk.
pub const RUN: usize = 1 << 16;

/// How strongly a claim holds an object that a delete decision names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Something else keeps this object: it stays, the recording whose
    /// companion or sidecar it is may still go without it.
    Keeps,
    /// The object cannot be checked (a link, an unreadable entry): the
    /// recording that names it is kept and reported too.
    Doubt,
    /// Another deletion of the same plan removes this object (its own
    /// recording item, or the first recording that names it): it is taken
    /// out of this one, so that each object has one intent and appears in
    /// one certificate once.
    Shared,
}

/// The objects of a delete item, numbered: 0 is the recording itself, then
/// its sidecars in order, then its companions in order.
pub type Part = u32;

/// A need of a delete item that a claim blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The delete item's position in the plan of its store.
    pub item: u64,
    pub part: Part,
    pub strength: Strength,
    /// Who claims it, as a plan line says it.
    pub claim: String,
}

/// What the listing showed of an object: the facts its intent carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub size: u64,
    pub e_tag: Option<String>,
    pub last_modified: DateTime<Utc>,
}

/// What the claims say of one delete item's needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Its needs a claim blocks, by part.
    pub blocked: Vec<Blocked>,
    /// Its companion needs that nothing blocks and the listing showed, by
    /// part; a companion need in neither list is absent from the store.
    pub listed: Vec<(Part, Seen)>,
}

type Digest16 = [u8; 16];

/// How an object is known in claims and approved plans: 16 bytes of the
/// SHA-256 of `store\0key`.
pub(crate) fn digest(store: &str, key: &str) -> Digest16 {
    let mut h = Sha256::new();
    h.update(store.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A record of the first sort: claims sort before the listing's entry of
/// the same key, which sorts before its needs, and a need of an object as a
/// recording before its needs as a sidecar or companion.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    digest: Digest16,
    /// [`CLAIM_KEEPS`], [`CLAIM_DOUBT`], [`EXISTS`] (text: the [`Seen`] as
    /// JSON), [`NEED_RECORDING`] (part 0), [`NEED`] (a sidecar, or any
    /// object after the first round), [`NEED_LISTED`] (a companion).
    tag: u8,
    item: u64,
    part: Part,
    text: String,
}

const CLAIM_KEEPS: u8 = 0;
const CLAIM_DOUBT: u8 = 1;
const EXISTS: u8 = 2;
const NEED_RECORDING: u8 = 3;
const NEED: u8 = 4;
const NEED_LISTED: u8 = 5;

/// A record of the second sort: blocked needs and listed companions by plan
/// position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Block {
    item: u64,
    part: Part,
    /// 0: kept, 1: doubt, 2: shared with another deletion, 3: listed (text:
    /// the [`Seen`] as JSON).
    tag: u8,
    text: String,
}

const BLOCK_LISTED: u8 = 3;

/// Fixed-layout binary records for the sort's spill files.
trait Record: Ord + Sized {
    /// About how much memory the record takes.
    fn size(&self) -> usize;
    fn write(&self, w: &mut dyn Write) -> io::Result<()>;
    fn read(r: &mut dyn Read) -> io::Result<Option<Self>>;
}

fn write_text(w: &mut dyn Write, text: &str) -> io::Result<()> {
    let len = u32::try_from(text.len()).map_err(io::Error::other)?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(text.as_bytes())
}

fn read_text(r: &mut dyn Read) -> io::Result<String> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf).map_err(io::Error::other)
}

/// Reads the first byte of a record, telling a clean end of file from a cut one.
fn read_first(r: &mut dyn Read) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

fn read_u64(r: &mut dyn Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_u32(r: &mut dyn Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

impl Record for Entry {
    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.text.len()
    }

    fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&[self.tag])?;
        w.write_all(&self.digest)?;
        w.write_all(&self.item.to_le_bytes())?;
        w.write_all(&self.part.to_le_bytes())?;
        write_text(w, &self.text)
    }

    fn read(r: &mut dyn Read) -> io::Result<Option<Self>> {
        let Some(tag) = read_first(r)? else {
            return Ok(None);
        };
        let mut digest = [0u8; 16];
        r.read_exact(&mut digest)?;
        Ok(Some(Entry {
            digest,
            tag,
            item: read_u64(r)?,
            part: read_u32(r)?,
            text: read_text(r)?,
        }))
    }
}

impl Record for Block {
    fn size(&self) -> usize {
        std::mem::size_of::<Self>() + self.text.len()
    }

    fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&[self.tag])?;
        w.write_all(&self.item.to_le_bytes())?;
        w.write_all(&self.part.to_le_bytes())?;
        write_text(w, &self.text)
    }

    fn read(r: &mut dyn Read) -> io::Result<Option<Self>> {
        let Some(tag) = read_first(r)? else {
            return Ok(None);
        };
        Ok(Some(Block {
            item: read_u64(r)?,
            part: read_u32(r)?,
            tag,
            text: read_text(r)?,
        }))
    }
}

/// An external merge sort: sorted runs of at most `run` records, spilled to
/// unnamed temporary files, merged on the way out.
struct Sorter<T: Record> {
    run: usize,
    buffer: Vec<T>,
    /// Approximate heap bytes of `buffer`.
    bytes: usize,
    spilled: Vec<std::fs::File>,
}

/// Bytes of records held in memory before a run is spilled, whatever their count.
const RUN_BYTES: usize = 4 << 20;
/// Spilled runs merged into one once there are this many, so that open
/// files stay few however large the store.
const MAX_RUNS: usize = 64;

impl<T: Record> Sorter<T> {
    fn new(run: usize) -> Self {
        Self {
            run: run.max(1),
            buffer: Vec::new(),
            bytes: 0,
            spilled: Vec::new(),
        }
    }

    fn push(&mut self, record: T) -> io::Result<()> {
        self.bytes += record.size();
        self.buffer.push(record);
        if self.buffer.len() >= self.run || self.bytes >= RUN_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_unstable();
        let mut w = BufWriter::new(tempfile::tempfile()?);
        for r in self.buffer.drain(..) {
            r.write(&mut w)?;
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        self.spilled.push(file);
        // Give the run's memory back: the next run fills a fresh buffer.
        self.buffer = Vec::new();
        self.bytes = 0;
        if self.spilled.len() >= MAX_RUNS {
            // Merge the runs so far into one, streamed.
            let mut merged = Self::merge(std::mem::take(&mut self.spilled))?;
            let mut w = BufWriter::new(tempfile::tempfile()?);
            while let Some(r) = merged.next()? {
                r.write(&mut w)?;
            }
            let mut file = w.into_inner().map_err(|e| e.into_error())?;
            file.rewind()?;
            self.spilled.push(file);
        }
        Ok(())
    }

    fn merge(files: Vec<std::fs::File>) -> io::Result<Sorted<T>> {
        let mut readers: Vec<BufReader<std::fs::File>> =
            files.into_iter().map(BufReader::new).collect();
        let mut heap = BinaryHeap::with_capacity(readers.len());
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some(first) = T::read(r)? {
                heap.push(Reverse((first, i)));
            }
        }
        Ok(Sorted::Merge { readers, heap })
    }

    /// The records in order.
    fn finish(mut self) -> io::Result<Sorted<T>> {
        if self.spilled.is_empty() {
            self.buffer.sort_unstable_by(|a, b| b.cmp(a));
            return Ok(Sorted::Memory(self.buffer));
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        Self::merge(self.spilled)
    }
}

enum Sorted<T: Record> {
    /// Sorted in reverse, so that `pop` yields the next record.
    Memory(Vec<T>),
    Merge {
        readers: Vec<BufReader<std::fs::File>>,
        heap: BinaryHeap<Reverse<(T, usize)>>,
    },
}

impl<T: Record> Sorted<T> {
    fn next(&mut self) -> io::Result<Option<T>> {
        match self {
            Sorted::Memory(v) => Ok(v.pop()),
            Sorted::Merge { readers, heap } => {
                let Some(Reverse((record, i))) = heap.pop() else {
                    return Ok(None);
                };
                if let Some(next) = T::read(&mut readers[i])? {
                    heap.push(Reverse((next, i)));
                }
                Ok(Some(record))
            }
        }
    }
}

/// The claims and needs of one store's plan.
pub struct Claims {
    store: String,
    entries: Sorter<Entry>,
    needs: u64,
    claims: u64,
}

impl Claims {
    pub fn new(store: &str) -> Self {
        Self::with_run(store, RUN)
    }

    /// With sorted runs of `run` records (small in tests, to exercise the merge).
    pub fn with_run(store: &str, run: usize) -> Self {
        Self {
            store: store.to_string(),
            entries: Sorter::new(run),
            needs: 0,
            claims: 0,
        }
    }

    /// Something keeps `key` (or doubts it), said as `claim`.
    pub fn claim(&mut self, key: &str, strength: Strength, claim: String) -> io::Result<()> {
        self.claims += 1;
        self.entries.push(Entry {
            digest: digest(&self.store, key),
            tag: match strength {
                Strength::Keeps => CLAIM_KEEPS,
                // A claim is never "shared"; say doubt, the stronger.
                Strength::Doubt | Strength::Shared => CLAIM_DOUBT,
            },
            item: 0,
            part: 0,
            text: claim,
        })
    }

    /// The store's listing showed `object`, which is not a recording
    /// candidate: a companion need of its key is met by it.
    pub fn exists(&mut self, object: &ObjectMeta) -> io::Result<()> {
        let seen = Seen {
            size: object.size,
            e_tag: object.e_tag.clone(),
            last_modified: object.last_modified,
        };
        self.entries.push(Entry {
            digest: digest(&self.store, object.location.as_ref()),
            tag: EXISTS,
            item: 0,
            part: 0,
            text: serde_json::to_string(&seen).map_err(io::Error::other)?,
        })
    }

    /// Delete item number `item` would remove `key` as its object `part`
    /// (its recording, part 0, or an object it already knows to exist).
    pub fn need(&mut self, key: &str, item: u64, part: Part) -> io::Result<()> {
        self.needs += 1;
        self.entries.push(Entry {
            digest: digest(&self.store, key),
            tag: if part == 0 { NEED_RECORDING } else { NEED },
            item,
            part,
            text: String::new(),
        })
    }

    /// Delete item number `item` would remove `key` as its object `part`
    /// if the listing showed it (a companion): unless blocked, it comes back
    /// in [`Resolved::listed`] with what the listing said of it, or not at
    /// all when the listing did not show it.
    pub fn need_listed(&mut self, key: &str, item: u64, part: Part) -> io::Result<()> {
        self.needs += 1;
        self.entries.push(Entry {
            digest: digest(&self.store, key),
            tag: NEED_LISTED,
            item,
            part,
            text: String::new(),
        })
    }

    /// The blocked needs and the listed companions, in plan order (by
    /// item, then part).
    pub fn resolve(self) -> io::Result<BlockedNeeds> {
        if self.needs == 0 {
            return Ok(BlockedNeeds {
                sorted: Sorted::Memory(Vec::new()),
                peeked: None,
            });
        }
        let run = self.entries.run;
        let mut entries = self.entries.finish()?;
        let mut blocks = Sorter::<Block>::new(run);
        // The first claim on the current key, if any; the listing's entry
        // of it; whether a need of it was seen.
        let mut current: Option<(Digest16, u8, String)> = None;
        let mut listed: Option<(Digest16, String)> = None;
        let mut needed: Option<Digest16> = None;
        while let Some(e) = entries.next()? {
            if current.as_ref().is_some_and(|(d, _, _)| *d != e.digest) {
                current = None;
            }
            if listed.as_ref().is_some_and(|(d, _)| *d != e.digest) {
                listed = None;
            }
            if e.tag == EXISTS {
                if listed.is_none() {
                    listed = Some((e.digest, e.text));
                }
            } else if e.tag < EXISTS {
                // Claims of doubt sort after those that keep: a doubt wins.
                match &mut current {
                    Some((_, tag, text)) if e.tag > *tag => {
                        *tag = e.tag;
                        *text = e.text;
                    }
                    Some(_) => {}
                    None => current = Some((e.digest, e.tag, e.text)),
                }
            } else if let Some((_, tag, text)) = &current {
                blocks.push(Block {
                    item: e.item,
                    part: e.part,
                    tag: *tag,
                    text: text.clone(),
                })?;
            } else if needed == Some(e.digest) {
                // Unclaimed, and an earlier need (its recording's, if any) removes it.
                blocks.push(Block {
                    item: e.item,
                    part: e.part,
                    tag: 2,
                    text: String::new(),
                })?;
            } else {
                needed = Some(e.digest);
                if e.tag == NEED_LISTED
                    && let Some((_, seen)) = &listed
                {
                    blocks.push(Block {
                        item: e.item,
                        part: e.part,
                        tag: BLOCK_LISTED,
                        text: seen.clone(),
                    })?;
                }
            }
        }
        Ok(BlockedNeeds {
            sorted: blocks.finish()?,
            peeked: None,
        })
    }
}

/// The blocked needs and listed companions of a store, read in plan order
/// alongside the spool.
pub struct BlockedNeeds {
    sorted: Sorted<Block>,
    peeked: Option<Block>,
}

impl BlockedNeeds {
    /// Whether no need at all is blocked and no companion was listed
    /// (nothing to apply: every companion need, if any, is absent).
    pub fn is_empty(&self) -> bool {
        self.peeked.is_none() && matches!(&self.sorted, Sorted::Memory(v) if v.is_empty())
    }

    /// What the claims say of delete item `item`'s needs; items must be
    /// asked in increasing order.
    pub fn of(&mut self, item: u64) -> io::Result<Resolved> {
        let mut out = Resolved::default();
        loop {
            let next = match self.peeked.take() {
                Some(b) => b,
                None => match self.sorted.next()? {
                    Some(b) => b,
                    None => return Ok(out),
                },
            };
            if next.item > item {
                self.peeked = Some(next);
                return Ok(out);
            }
            if next.item == item && next.tag == BLOCK_LISTED {
                let seen = serde_json::from_str(&next.text).map_err(io::Error::other)?;
                out.listed.push((next.part, seen));
            } else if next.item == item {
                out.blocked.push(Blocked {
                    item: next.item,
                    part: next.part,
                    strength: match next.tag {
                        0 => Strength::Keeps,
                        1 => Strength::Doubt,
                        _ => Strength::Shared,
                    },
                    claim: next.text,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(
        run: usize,
        claims: &[(&str, Strength, &str)],
        needs: &[(&str, u64, Part)],
    ) -> Vec<Blocked> {
        let mut c = Claims::with_run("s", run);
        for (k, s, t) in claims {
            c.claim(k, *s, t.to_string()).unwrap();
        }
        for (k, i, p) in needs {
            c.need(k, *i, *p).unwrap();
        }
        let mut b = c.resolve().unwrap();
        let mut out = Vec::new();
        for i in 0..=needs.iter().map(|n| n.1).max().unwrap_or(0) {
            let resolved = b.of(i).unwrap();
            assert!(resolved.listed.is_empty(), "no companion need here");
            out.extend(resolved.blocked);
        }
        out
    }

    fn meta(key: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: key.into(),
            last_modified: DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            size,
            e_tag: Some(format!("\"{key}\"")),
            version: None,
        }
    }

    #[test]
    fn a_companion_need_is_listed_when_the_listing_showed_it_and_nothing_blocks_it() {
        for run in [1, 2, 3, 1000] {
            let mut c = Claims::with_run("s", run);
            // Listed: two transcripts, a kept recording's transcript, a
            // transcript two deletions share.
            for (k, size) in [
                ("t/1.txt", 11),
                ("t/2.txt", 22),
                ("t/kept.txt", 33),
                ("t/shared.txt", 44),
            ] {
                c.exists(&meta(k, size)).unwrap();
            }
            c.claim("t/kept.txt", Strength::Keeps, "kept".into())
                .unwrap();
            c.need("r/1.wav", 0, 0).unwrap();
            c.need_listed("t/1.txt", 0, 1).unwrap();
            c.need_listed("t/absent.txt", 0, 2).unwrap();
            c.need("r/2.wav", 1, 0).unwrap();
            c.need("r/2.json", 1, 1).unwrap();
            c.need_listed("t/2.txt", 1, 2).unwrap();
            c.need_listed("t/kept.txt", 1, 3).unwrap();
            c.need_listed("t/shared.txt", 1, 4).unwrap();
            c.need("r/3.wav", 2, 0).unwrap();
            c.need_listed("t/shared.txt", 2, 1).unwrap();
            let mut b = c.resolve().unwrap();
            assert!(!b.is_empty());
            let seen = |k: &str, size| Seen {
                size,
                e_tag: Some(format!("\"{k}\"")),
                last_modified: DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            };
            let first = b.of(0).unwrap();
            assert_eq!(first.listed, vec![(1, seen("t/1.txt", 11))], "run of {run}");
            assert!(
                first.blocked.is_empty(),
                "an absent companion is not blocked"
            );
            let second = b.of(1).unwrap();
            assert_eq!(
                second.listed,
                vec![(2, seen("t/2.txt", 22)), (4, seen("t/shared.txt", 44))],
                "run of {run}"
            );
            assert_eq!(
                second
                    .blocked
                    .iter()
                    .map(|b| (b.part, b.strength))
                    .collect::<Vec<_>>(),
                vec![(3, Strength::Keeps)]
            );
            let third = b.of(2).unwrap();
            assert!(third.listed.is_empty(), "the first deletion removes it");
            assert_eq!(
                third
                    .blocked
                    .iter()
                    .map(|b| (b.part, b.strength))
                    .collect::<Vec<_>>(),
                vec![(1, Strength::Shared)]
            );
        }
    }

    #[test]
    fn a_companion_the_listing_did_not_show_comes_back_as_nothing_to_delete() {
        let mut c = Claims::new("s");
        c.exists(&meta("t/other.txt", 1)).unwrap();
        c.need("r/1.wav", 0, 0).unwrap();
        c.need_listed("t/1.txt", 0, 1).unwrap();
        let mut b = c.resolve().unwrap();
        assert!(b.is_empty());
        assert_eq!(b.of(0).unwrap(), Resolved::default());
    }

    #[test]
    fn a_need_on_a_claimed_key_is_blocked_with_the_claim_and_others_are_not() {
        for run in [1, 2, 3, 1000] {
            let got = blocked(
                run,
                &[
                    ("t/C-1.txt", Strength::Keeps, "companion of held"),
                    ("o/C-1.wav", Strength::Keeps, "kept until 2031"),
                    ("link", Strength::Doubt, "a link"),
                    ("link", Strength::Keeps, "also kept"),
                ],
                &[
                    ("q/C-1.wav", 0, 0),
                    ("t/C-1.txt", 0, 2),
                    ("o/C-1.wav", 0, 1),
                    ("q/C-2.wav", 1, 0),
                    ("t/C-2.txt", 1, 1),
                    ("link", 3, 1),
                ],
            );
            assert_eq!(
                got,
                vec![
                    Blocked {
                        item: 0,
                        part: 1,
                        strength: Strength::Keeps,
                        claim: "kept until 2031".into()
                    },
                    Blocked {
                        item: 0,
                        part: 2,
                        strength: Strength::Keeps,
                        claim: "companion of held".into()
                    },
                    Blocked {
                        item: 3,
                        part: 1,
                        strength: Strength::Doubt,
                        claim: "a link".into()
                    },
                ],
                "run of {run}"
            );
        }
    }

    #[test]
    fn an_object_two_deletions_need_is_left_to_one_of_them() {
        for run in [1, 2, 1000] {
            let got = blocked(
                run,
                &[],
                &[
                    // Two recordings share a transcript; the first keeps it.
                    ("t/1.txt", 0, 1),
                    ("t/1.txt", 1, 1),
                    // A companion that is a recording of its own is left to that item.
                    ("o/1.wav", 2, 2),
                    ("o/1.wav", 3, 0),
                ],
            );
            let shared = |item, part| Blocked {
                item,
                part,
                strength: Strength::Shared,
                claim: String::new(),
            };
            assert_eq!(got, vec![shared(1, 1), shared(2, 2)], "run of {run}");
        }
    }

    #[test]
    fn claims_in_another_store_do_not_block() {
        let mut c = Claims::new("a");
        c.claim("k", Strength::Keeps, "x".into()).unwrap();
        let mut other = Claims::new("b");
        other.need("k", 0, 0).unwrap();
        other.claim("j", Strength::Keeps, "y".into()).unwrap();
        assert!(other.resolve().unwrap().of(0).unwrap().blocked.is_empty());
    }

    #[test]
    fn many_records_through_spilled_runs_come_back_complete_and_in_order() {
        // Runs of 7: hundreds of spilled runs, merged in cascades of MAX_RUNS.
        let mut c = Claims::with_run("s", 7);
        for i in 0..5000u64 {
            c.need(&format!("k{i}"), i, 0).unwrap();
            if i % 7 == 0 {
                c.claim(&format!("k{i}"), Strength::Keeps, format!("claim {i}"))
                    .unwrap();
            }
        }
        let mut b = c.resolve().unwrap();
        let mut seen = 0;
        for i in 0..5000u64 {
            let got = b.of(i).unwrap().blocked;
            if i % 7 == 0 {
                assert_eq!(got.len(), 1, "item {i}");
                assert_eq!(got[0].claim, format!("claim {i}"));
                seen += 1;
            } else {
                assert!(got.is_empty(), "item {i}");
            }
        }
        assert_eq!(seen, 715);
    }
}
