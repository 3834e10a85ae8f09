//! Aligned plain-text output: a [`Table`] with a header row, and [`Fields`], a two-column
//! name/value listing. Columns whose cells are all numbers are right-aligned.

use std::fmt::Write as _;

/// Rows of cells under a header, rendered with columns padded to their widest cell.
#[derive(Debug)]
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Table {
        Table { header: header.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; it must have one cell per header column.
    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "a table row has one cell per column");
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        let mut numeric = vec![!self.rows.is_empty(); columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
                numeric[i] &= is_number(cell);
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let pad = widths[i] - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if numeric[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// A name/value listing: `name:` padded so the values line up.
#[derive(Debug, Default)]
pub struct Fields {
    pairs: Vec<(&'static str, String)>,
}

impl Fields {
    pub fn new() -> Fields {
        Fields::default()
    }

    pub fn add(&mut self, name: &'static str, value: impl Into<String>) -> &mut Fields {
        self.pairs.push((name, value.into()));
        self
    }

    pub fn render(&self) -> String {
        let width = self.pairs.iter().map(|(n, _)| n.len() + 1).max().unwrap_or(0);
        let mut out = String::new();
        for (name, value) in &self.pairs {
            // An empty name continues the previous value on a new line.
            let label = if name.is_empty() { String::new() } else { format!("{name}:") };
            let _ = writeln!(out, "{label:width$}  {value}");
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Whether a cell reads as a number (counts, rates), for right alignment.
fn is_number(cell: &str) -> bool {
    !cell.is_empty() && cell.parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_text_left_and_numbers_right() {
        let mut t = Table::new(&["NAME", "READY"]);
        t.row(vec!["orders".into(), "7".into()]);
        t.row(vec!["a".into(), "1200".into()]);
        assert_eq!(t.render(), "NAME    READY\norders      7\na        1200\n");
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["A", "B"]).render(), "A  B\n");
    }

    #[test]
    fn fields_line_up() {
        let mut f = Fields::new();
        f.add("id", "x").add("state", "ready");
        assert_eq!(f.render(), "id:     x\nstate:  ready\n");
    }
}
