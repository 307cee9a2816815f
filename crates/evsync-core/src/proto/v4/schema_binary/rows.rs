//! Row runs: how SchemaBinary writes every array of structs.
//!
//! `uv(count)`, then per row `uv(rowLen)` + row. A row starts with
//! `uv(shape)`:
//! * shape 0 declares a new shape in this row: for each present field,
//!   `uv(fieldId)` (the bare id, not ·8) then its cell;
//! * shape k ≥ 1 reuses the k-th shape declared in this array: only the
//!   cells follow, in that shape's order, and must fill the row exactly.
//!
//! A cell is `uv(code)`: an even code is a literal of `code/2` bytes (the
//! value's region; integers are length-prefixed here too), an odd code a
//! back-reference to the `(code−1)/2`-th literal value of that field in this
//! array. Only plain-string fields intern (of the eventlog rows, `Entry`'s
//! `event` and `primaryKey`), and every literal of such a field joins its
//! table, numbered from 0 per array.
//!
//! Our writer declares the shape in the first row and reuses it (all our row
//! fields are required, so every row has the same shape) and never writes
//! references; the reader supports everything Effect writes.

use std::collections::BTreeSet;

use super::reader::Reader;
use super::text::Text;
use super::writer::Writer;
use crate::proto::v4::error::{Result, err};

/// A field of a row struct.
#[derive(Clone, Copy, Debug)]
pub struct RowField {
    /// Its field id (FNV-1a of `name`).
    pub id: u32,
    /// Its name, for error paths.
    pub name: &'static str,
    /// True for plain-string fields, whose cells may be back-references.
    pub interned: bool,
}

/// A struct that appears in arrays, so travels as row-run rows.
pub trait Row: Sized {
    /// The fields in ascending id order (the order our writer declares).
    const FIELDS: &'static [RowField];
    /// The fields read so far.
    type Partial: Default;
    /// Decodes a literal cell of the non-interned field `index` from its
    /// region (which must be used up).
    fn cell(partial: &mut Self::Partial, index: usize, r: &mut Reader<'_>) -> Result<()>;
    /// Takes the value of the interned (string) field `index`.
    fn text_cell(partial: &mut Self::Partial, index: usize, value: Text) -> Result<()>;
    /// The struct, or a missing-field error.
    fn finish(partial: Self::Partial) -> Result<Self>;
    /// Writes the value of field `index` (its cell's content).
    fn write_cell(&self, index: usize, w: &mut Writer);
}

/// How many rows a decoder allocates for before it has seen them: a count
/// is only checked against the bytes left, and a row of a few bytes can
/// stand for a struct of a hundred, so room grows with the rows read.
const PREALLOCATE_ROWS: usize = 256;

/// A declared shape: per cell, the index of the known field it fills, or
/// `None` for a field this schema does not have (its cells are skipped).
type Shape = Vec<Option<usize>>;

/// Reads `uv(count)` and that many rows.
pub fn read_rows<T: Row>(r: &mut Reader<'_>) -> Result<Vec<T>> {
    let count = r.count()?;
    let mut out = Vec::with_capacity(count.min(PREALLOCATE_ROWS));
    let mut shapes: Vec<Shape> = Vec::new();
    let mut tables: Vec<Vec<Text>> = T::FIELDS.iter().map(|_| Vec::new()).collect();
    for i in 0..count {
        let row = r
            .sized()
            .and_then(|mut row| read_row::<T>(&mut row, &mut shapes, &mut tables))
            .map_err(|e| e.in_index(i))?;
        out.push(row);
    }
    Ok(out)
}

fn read_row<T: Row>(
    row: &mut Reader<'_>,
    shapes: &mut Vec<Shape>,
    tables: &mut [Vec<Text>],
) -> Result<T> {
    let mut partial = T::Partial::default();
    let code = row.uv()?;
    if code == 0 {
        let mut declared = Shape::new();
        let mut seen = 0u64;
        let mut seen_unknown = BTreeSet::new();
        while !row.is_empty() {
            let id = row.uv()?;
            if id == 0 {
                return Err(err!(
                    UnsupportedField,
                    "field id 0 (an index-signature block) in a row without one"
                ));
            }
            let slot = T::FIELDS.iter().position(|f| u64::from(f.id) == id);
            match slot {
                Some(index) => {
                    if seen & (1 << index) != 0 {
                        return Err(err!(DuplicateField, "field id {id} appears twice"));
                    }
                    seen |= 1 << index;
                }
                None => {
                    if !seen_unknown.insert(id) {
                        return Err(err!(DuplicateField, "unknown field id {id} appears twice"));
                    }
                }
            }
            declared.push(slot);
            read_cell::<T>(row, slot, &mut partial, tables)?;
        }
        shapes.push(declared);
    } else {
        let Some(shape) = usize::try_from(code - 1).ok().and_then(|k| shapes.get(k)) else {
            return Err(err!(
                BadReference,
                "row shape {code} was not declared ({} so far)",
                shapes.len()
            ));
        };
        for &slot in shape {
            read_cell::<T>(row, slot, &mut partial, tables)?;
        }
        row.finish()?;
    }
    T::finish(partial)
}

fn read_cell<T: Row>(
    row: &mut Reader<'_>,
    slot: Option<usize>,
    partial: &mut T::Partial,
    tables: &mut [Vec<Text>],
) -> Result<()> {
    let code = row.uv()?;
    let Some(index) = slot else {
        // A field this schema does not have: skip a literal, ignore a
        // reference (as Effect does).
        if code & 1 == 0 {
            let len = cell_len(code)?;
            row.region(len)?;
        }
        return Ok(());
    };
    let field = &T::FIELDS[index];
    let table = &mut tables[index];
    let result = if code & 1 == 1 {
        let reference = (code - 1) / 2;
        if !field.interned {
            Err(err!(
                BadReference,
                "a back-reference in a field that does not intern"
            ))
        } else {
            match usize::try_from(reference).ok().and_then(|k| table.get(k)) {
                Some(value) => T::text_cell(partial, index, value.clone()),
                None => Err(err!(
                    BadReference,
                    "back-reference {reference} to a table of {}",
                    table.len()
                )),
            }
        }
    } else {
        cell_len(code)
            .and_then(|len| row.region(len))
            .and_then(|mut cell| {
                if field.interned {
                    let value = cell.rest_text()?;
                    table.push(value.clone());
                    T::text_cell(partial, index, value)
                } else {
                    T::cell(partial, index, &mut cell)?;
                    cell.finish()
                }
            })
    };
    result.map_err(|e| e.in_field(field.name))
}

fn cell_len(code: u64) -> Result<usize> {
    usize::try_from(code / 2).map_err(|_| err!(Truncated, "a cell longer than memory"))
}

/// Writes `uv(count)` and the rows: the first declares the shape (every
/// field, ascending ids), the rest reuse it.
pub fn write_rows<T: Row>(w: &mut Writer, rows: &[T]) {
    w.uv(rows.len() as u64);
    for (i, row) in rows.iter().enumerate() {
        w.sized(|w| {
            w.uv(if i == 0 { 0 } else { 1 });
            for (index, field) in T::FIELDS.iter().enumerate() {
                if i == 0 {
                    w.uv(u64::from(field.id));
                }
                w.cell(|w| row.write_cell(index, w));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::v4::error::DecodeErrorKind;
    use bytes::Bytes;

    /// A test row: `n` (Int, id 1) and `s` (string, id 2, interned).
    #[derive(Debug, PartialEq)]
    struct T {
        n: i64,
        s: Text,
    }

    impl Row for T {
        const FIELDS: &'static [RowField] = &[
            RowField {
                id: 1,
                name: "n",
                interned: false,
            },
            RowField {
                id: 2,
                name: "s",
                interned: true,
            },
        ];
        type Partial = (Option<i64>, Option<Text>);
        fn cell(p: &mut Self::Partial, _: usize, r: &mut Reader<'_>) -> Result<()> {
            p.0 = Some(r.int()?);
            Ok(())
        }
        fn text_cell(p: &mut Self::Partial, _: usize, value: Text) -> Result<()> {
            p.1 = Some(value);
            Ok(())
        }
        fn finish(p: Self::Partial) -> Result<Self> {
            Ok(T {
                n: super::super::reader::required(p.0, "n")?,
                s: super::super::reader::required(p.1, "s")?,
            })
        }
        fn write_cell(&self, index: usize, w: &mut Writer) {
            match index {
                0 => w.nv(self.n),
                _ => w.bytes(self.s.as_bytes()),
            }
        }
    }

    fn read(bytes: &[u8]) -> Result<Vec<T>> {
        let buf = Bytes::copy_from_slice(bytes);
        let mut r = Reader::new(&buf);
        let rows = read_rows::<T>(&mut r)?;
        r.finish()?;
        Ok(rows)
    }

    #[test]
    fn shapes_references_and_unknown_fields() {
        // Row 0 declares [s, unknown 9, n] with s = "ab", 9 = literal "x",
        // n = 1. Row 1 reuses it: s → ref 0, 9 → ref (ignored), n = 2.
        // Row 2 declares [n] only → missing s.
        let rows = read(
            &[
                3, //
                11, 0, 2, 4, b'a', b'b', 9, 2, b'x', 1, 2, 2, //
                5, 1, 1, 1, 2, 4, //
            ][..16],
        );
        // (count says 3 but only two rows follow)
        assert_eq!(rows.unwrap_err().kind(), DecodeErrorKind::Truncated);
        let rows = read(&[
            2, //
            11, 0, 2, 4, b'a', b'b', 9, 2, b'x', 1, 2, 2, //
            5, 1, 1, 1, 2, 4,
        ])
        .unwrap();
        assert_eq!(
            rows,
            [
                T {
                    n: 1,
                    s: "ab".into()
                },
                T {
                    n: 2,
                    s: "ab".into()
                }
            ]
        );
    }

    #[test]
    fn bad_rows_are_errors() {
        let kind = |b: &[u8]| read(b).unwrap_err().kind();
        // Shape 1 before any declaration.
        assert_eq!(kind(&[1, 2, 1, 0]), DecodeErrorKind::BadReference);
        // A reference into an empty table.
        assert_eq!(kind(&[1, 4, 0, 2, 1, 0]), DecodeErrorKind::BadReference);
        // A reference in a field that does not intern.
        assert_eq!(kind(&[1, 4, 0, 1, 1, 0]), DecodeErrorKind::BadReference);
        // A missing field.
        assert_eq!(kind(&[1, 4, 0, 1, 2, 2]), DecodeErrorKind::MissingField);
        // A duplicate field.
        assert_eq!(
            kind(&[1, 7, 0, 1, 2, 2, 1, 2, 2]),
            DecodeErrorKind::DuplicateField
        );
        // Bytes left in a reused row.
        assert_eq!(
            kind(&[2, 7, 0, 1, 2, 2, 2, 2, b'a', 5, 1, 2, 4, 1, 9]),
            DecodeErrorKind::TrailingBytes
        );
        // A cell that overruns its row.
        assert_eq!(kind(&[1, 4, 0, 1, 8, 2]), DecodeErrorKind::Truncated);
        // A count beyond the bytes left.
        assert_eq!(kind(&[9, 1]), DecodeErrorKind::CountTooLarge);
        // Trailing bytes inside an int cell.
        assert_eq!(
            kind(&[1, 8, 0, 1, 4, 2, 0, 2, 2, b'a']),
            DecodeErrorKind::TrailingBytes
        );
    }

    #[test]
    fn written_rows_read_back() {
        let rows = vec![
            T {
                n: -5,
                s: "x".into(),
            },
            T {
                n: 1 << 40,
                s: "a longer string".into(),
            },
        ];
        let mut w = Writer::new();
        write_rows(&mut w, &rows);
        let bytes = w.into_vec();
        // Row 0 declares, row 1 reuses shape 1.
        assert_eq!(&bytes[..4], &[2, 7, 0, 1]);
        assert_eq!(read(&bytes).unwrap(), rows);
        let mut w = Writer::new();
        write_rows::<T>(&mut w, &[]);
        assert_eq!(w.into_vec(), [0]);
    }
}
