//! kiln's own main-content extractor (`html.extract`'s `engine: kiln`): Python
//! trafilatura's rule stage, in one pass over an arena, linear in the page.
//!
//! One role, in the order Python trafilatura's precision mode applies its rules
//! (`trafilatura/htmlprocessing.py`, `main_extractor.py`, `xpaths.py`, which this follows
//! and docs/text.md measures against):
//! 1. **clean**: the page is parsed (html5ever, through `scraper`) and copied into an
//!    arena of the tags that matter, leaving out what trafilatura deletes (scripts,
//!    navigation, asides, footers, forms holding little of the page, images, …) and
//!    flattening what it strips (formatting, `<span>`, links outside text blocks);
//!    comment sections and empty blocks go too;
//! 2. **frame**: the first element the content expressions name (`articleBody`, the first
//!    `<article>`, `story`, `content`, `main`, …), pruned of boilerplate by class and id
//!    (share, social, sidebar, byline, cookie, …), of `<header>`, of hidden elements and of
//!    link farms (link density, twice, for blocks, lists and paragraphs; tables);
//! 3. **text**: the frame's paragraphs, headings, lists, quotes, code, tables and line
//!    breaks, in order, as lines (`- ` before list items, `| a | b |` rows);
//! 4. **recovery**: when no frame gives more than one block or the text is under
//!    [`MIN_EXTRACTED`] characters, the paragraphs, quotes, code and tables of the whole
//!    cleaned page, pruned the same way, not repeating what the frame gave.
//!
//! What trafilatura then does (`compare_extraction`: readability's text replaces the
//! rules' when it is more than twice as long, or when the rules found no paragraph and
//! readability more than 500 characters; jusText when the text is under [`MIN_EXTRACTED`]
//! characters) is not done here. Readability's text is part of the cleaned page without
//! the boilerplate by class and id, so its length is bounded by that part's: when the
//! bound says the comparison could change the answer, [`Extracted::fallback`] says so and
//! the step hands the page to the full port (the `trafilatura` crate) when `fallback` is
//! on; otherwise the rules' text is what trafilatura would keep. Every arena node is visited a bounded number of times
//! per rule; text lengths and link statistics are kept per subtree and recomputed
//! bottom-up after each deletion pass, never by re-walking a subtree per element.

use std::sync::LazyLock;

use regex::Regex;

/// Below this many characters trafilatura calls an extraction short (its
/// `MIN_EXTRACTED_SIZE`): the recovery runs, and the fallback engines would.
pub const MIN_EXTRACTED: usize = 250;

/// What [`extract`] found.
#[derive(Debug, PartialEq)]
pub struct Extracted {
    /// The main text, lines separated by `\n`; empty when nothing was found.
    pub text: String,
    /// trafilatura's comparison with its fallback extractors could choose another text
    /// for this page (see [`extract`]): the rules' text is shorter than
    /// [`MIN_EXTRACTED`], or less than half the text readability could find, or has no
    /// paragraph where readability could find more than twice [`MIN_EXTRACTED`].
    pub fallback: bool,
}

/// What [`extract`] keeps.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'u> {
    /// Tables' text, as `| a | b |` rows.
    pub tables: bool,
    /// Links in text blocks as `[text](target)`, as Python trafilatura's text output
    /// writes them with `include_links`.
    pub links: bool,
    /// The page's URL: relative link targets are made absolute against it.
    pub base: Option<&'u url::Url>,
}

impl Default for Rules<'_> {
    fn default() -> Self {
        Rules {
            tables: true,
            links: false,
            base: None,
        }
    }
}

/// The main text of one HTML page.
#[must_use]
pub fn extract(html: &str, rules: &Rules<'_>) -> Extracted {
    let doc = scraper::Html::parse_document(html);
    let mut dom = Dom::build(&doc, rules);
    dom.clean();
    let backup = dom.dead.clone();
    let bound = dom.fallback_bound();
    dom.dead.clone_from(&backup);
    dom.sum();
    let mut out = Blocks::default();
    let mut consumed = vec![false; dom.nodes.len()];
    for frame in 0..FRAMES {
        let Some(root) = dom.frame(frame) else {
            continue;
        };
        dom.prune(root);
        if dom.children(root).next().is_none() {
            continue;
        }
        let div = dom.paragraph_chars() < MIN_EXTRACTED;
        let start = out.0.len();
        let single = dom.is_single_run(root, div);
        let lead = if single {
            None
        } else {
            let t = dom.lead_text(root);
            (!t.trim().is_empty()).then_some(t)
        };
        if single {
            dom.handle(root, div, &mut out, &mut consumed);
        } else {
            dom.walk(root, div, &mut out, &mut consumed);
        }
        while out.0.last().is_some_and(|b| b.kind == Kind::Head) {
            out.0.pop();
        }
        if out.0.len() > 1 {
            if let Some(lead) = lead {
                out.0.insert(start, Block::new(Kind::P, lead));
            }
            break;
        }
    }
    if out.0.is_empty() || out.chars() < MIN_EXTRACTED {
        // The recovery reads the cleaned page as it was before the frames were pruned.
        dom.dead = backup;
        dom.sum();
        dom.recover(&mut out, &consumed);
    }
    out.drop_repeats();
    let text = out.render();
    let chars = text.chars().count();
    let fallback = chars < MIN_EXTRACTED
        || 2 * chars < bound
        || (bound > 2 * MIN_EXTRACTED && !out.0.iter().any(|b| b.kind == Kind::P));
    Extracted { text, fallback }
}

/// The kinds of node the rules tell apart (what trafilatura's tag conversion makes of
/// the HTML tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    P,
    Div,
    Section,
    Article,
    Main,
    Header,
    Form,
    /// h1-h6, summary.
    Head,
    /// ul, ol, dl.
    List,
    /// li, dd, dt.
    Item,
    /// br, hr.
    Lb,
    /// blockquote, q, and pre that does not look like code.
    Quote,
    /// code, and pre that looks like code.
    Code,
    Table,
    Row,
    Cell,
    /// A link inside a text block (counted for link density, then flattened).
    Ref,
    Span,
    /// Everything else kept (html, body, unknown tags).
    Other,
}

#[derive(Debug)]
struct Node<'a> {
    kind: Kind,
    name: &'a str,
    parent: u32,
    /// Index in the parent's `children`.
    pos: u32,
    children: Vec<u32>,
    text: &'a str,
    /// A text node's characters, whitespace runs counted once.
    chars: u32,
    href: &'a str,
    id: &'a str,
    class: &'a str,
    style: &'a str,
    role: &'a str,
    itemprop: &'a str,
    other: u8,
}

/// `Node::other` flags.
const ARIA_HIDDEN: u8 = 1;
const LP_REPLACEMENT: u8 = 2;
const MOST_POPULAR: u8 = 4;
const HEAD_CELL: u8 = 8;

/// Subtree sums kept per node, recomputed bottom-up after a deletion pass.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    /// Characters of text, whitespace runs counted once.
    chars: u32,
    /// Links, links with text, links with fewer than 10 characters, their characters.
    links: u32,
    text_links: u32,
    short_links: u32,
    link_chars: u32,
}

struct Dom<'a> {
    nodes: Vec<Node<'a>>,
    dead: Vec<bool>,
    /// One past the last node under each node (its subtree is `i..end[i]`).
    end: Vec<u32>,
    sums: Vec<Sums>,
    tables: bool,
    links: bool,
    base: Option<&'a url::Url>,
}

/// Tags trafilatura deletes with their content (`MANUALLY_CLEANED`); `form` and a
/// `figure` holding a table are decided apart.
fn cleaned(name: &str) -> bool {
    matches!(
        name,
        "aside"
            | "embed"
            | "fencedframe"
            | "footer"
            | "head"
            | "iframe"
            | "menu"
            | "object"
            | "script"
            | "applet"
            | "audio"
            | "canvas"
            | "map"
            | "picture"
            | "svg"
            | "video"
            | "area"
            | "blink"
            | "button"
            | "datalist"
            | "dialog"
            | "frame"
            | "frameset"
            | "fieldset"
            | "link"
            | "input"
            | "label"
            | "legend"
            | "marquee"
            | "math"
            | "menuitem"
            | "nav"
            | "noindex"
            | "noscript"
            | "optgroup"
            | "option"
            | "output"
            | "param"
            | "progress"
            | "rp"
            | "rt"
            | "rtc"
            | "select"
            | "source"
            | "style"
            | "track"
            | "textarea"
            | "time"
            | "use"
            | "template"
    )
}

/// Tags whose content stays in place without them (`MANUALLY_STRIPPED`, the formatting
/// tags, deletions).
fn stripped(name: &str) -> bool {
    matches!(
        name,
        "abbr"
            | "acronym"
            | "address"
            | "bdi"
            | "bdo"
            | "big"
            | "cite"
            | "data"
            | "dfn"
            | "font"
            | "hgroup"
            | "img"
            | "ins"
            | "mark"
            | "meta"
            | "nobr"
            | "ruby"
            | "small"
            | "tbody"
            | "tfoot"
            | "thead"
            | "wbr"
            | "em"
            | "i"
            | "b"
            | "strong"
            | "u"
            | "kbd"
            | "samp"
            | "tt"
            | "var"
            | "sub"
            | "sup"
            | "del"
            | "s"
            | "strike"
    )
}

const NONE: u32 = u32::MAX;

impl<'a> Dom<'a> {
    /// The arena of `doc`: cleaned tags left out, stripped tags flattened.
    fn build(doc: &'a scraper::Html, rules: &Rules<'a>) -> Self {
        let mut dom = Dom {
            nodes: Vec::with_capacity(256),
            dead: Vec::new(),
            end: Vec::new(),
            sums: Vec::new(),
            tables: rules.tables,
            links: rules.links,
            base: rules.base,
        };
        dom.nodes.push(Node::new(Kind::Other, "#root", NONE));
        // Depth first in document order, so a parent comes before its children and the
        // arena is in document order. Each frame: the source children still to visit, the
        // arena parent they go under, whether they are inside a text container (div, li,
        // p, table: a link there counts for link density). A stripped element's children
        // go under its parent.
        let mut stack = vec![(doc.tree.root().children(), 0u32, false)];
        while let Some((kids, parent, in_container)) = stack.last_mut() {
            let (parent, in_container) = (*parent, *in_container);
            let Some(child) = kids.next() else {
                stack.pop();
                continue;
            };
            match child.value() {
                scraper::Node::Text(t) => {
                    let i = dom.push(Node::new(Kind::Text, "", parent));
                    dom.nodes[i as usize].text = t;
                    dom.nodes[i as usize].chars = collapsed_len(t);
                }
                scraper::Node::Element(e) => {
                    let name = e.name();
                    let kind = match dom.kind(name, e, child) {
                        _ if name == "a" && in_container => Kind::Ref,
                        Some(k) => k,
                        None if stripped(name) || name == "a" => {
                            stack.push((child.children(), parent, in_container));
                            continue;
                        }
                        None => continue,
                    };
                    let i = dom.push(Node::new(kind, name, parent));
                    dom.nodes[i as usize].attrs(e);
                    let container = in_container || matches!(name, "div" | "li" | "p" | "table");
                    stack.push((child.children(), i, container));
                }
                _ => {}
            }
        }
        dom.dead = vec![false; dom.nodes.len()];
        dom.end = (1..=dom.nodes.len() as u32).collect();
        for i in (1..dom.nodes.len()).rev() {
            let p = dom.nodes[i].parent as usize;
            dom.end[p] = dom.end[p].max(dom.end[i]);
        }
        dom.sums = vec![Sums::default(); dom.nodes.len()];
        dom
    }

    fn push(&mut self, mut node: Node<'a>) -> u32 {
        let i = self.nodes.len() as u32;
        let parent = node.parent;
        node.pos = self.nodes[parent as usize].children.len() as u32;
        self.nodes.push(node);
        self.nodes[parent as usize].children.push(i);
        i
    }

    /// The living siblings after `i`, in order.
    fn after(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        let n = &self.nodes[i as usize];
        let siblings: &[u32] = if n.parent == NONE {
            &[]
        } else {
            &self.nodes[n.parent as usize].children[n.pos as usize + 1..]
        };
        siblings.iter().copied().filter(|&c| !self.dead[c as usize])
    }

    /// What an element becomes, `None` when it is cleaned or stripped.
    fn kind(
        &self,
        name: &str,
        e: &scraper::node::Element,
        node: ego_tree::NodeRef<'_, scraper::Node>,
    ) -> Option<Kind> {
        let holds_table = || {
            node.descendants()
                .any(|d| d.value().as_element().is_some_and(|e| e.name() == "table"))
        };
        Some(match name {
            "p" => Kind::P,
            "div" | "details" => Kind::Div,
            "section" => Kind::Section,
            "article" => Kind::Article,
            "main" => Kind::Main,
            "header" => Kind::Header,
            "form" => Kind::Form,
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "summary" => Kind::Head,
            "ul" | "ol" | "dl" => Kind::List,
            "li" | "dd" | "dt" => Kind::Item,
            "br" | "hr" => Kind::Lb,
            "blockquote" | "q" => Kind::Quote,
            "code" => Kind::Code,
            "pre" => {
                if looks_like_code(node) {
                    Kind::Code
                } else {
                    Kind::Quote
                }
            }
            "table" | "tr" | "td" | "th" if !self.tables => return None,
            "table" if matches!(e.attr("role"), Some("presentation" | "none")) => Kind::Div,
            "table" => Kind::Table,
            "tr" => Kind::Row,
            "td" | "th" => Kind::Cell,
            "figure" if self.tables && holds_table() => Kind::Div,
            "figure" => return None,
            "span" => Kind::Span,
            "a" => return None,
            n if cleaned(n) || stripped(n) => return None,
            _ => Kind::Other,
        })
    }

    fn children(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        self.nodes[i as usize]
            .children
            .iter()
            .copied()
            .filter(|&c| !self.dead[c as usize])
    }

    fn kind_of(&self, i: u32) -> Kind {
        self.nodes[i as usize].kind
    }

    /// The living nodes under `i` (not `i`), in document order: the arena is in
    /// document order, so they are the living ones of `i`'s range.
    fn descendants(&self, i: u32) -> impl Iterator<Item = u32> + '_ {
        (i + 1..self.end[i as usize]).filter(|&n| !self.dead[n as usize])
    }

    /// The next living element sibling of `i`.
    fn has_next_element(&self, i: u32) -> bool {
        self.after(i).any(|c| self.kind_of(c) != Kind::Text)
    }

    /// Deletes `i` and everything under it.
    fn kill(&mut self, i: u32) {
        for d in &mut self.dead[i as usize..self.end[i as usize] as usize] {
            *d = true;
        }
    }

    /// Step 1: forms, comment sections, empty blocks (trafilatura's `tree_cleaning`,
    /// `REMOVE_COMMENTS_*`, `prune_html`).
    fn clean(&mut self) {
        self.sum();
        let total = self.sums[0].chars;
        for i in 0..self.nodes.len() as u32 {
            let n = &self.nodes[i as usize];
            if n.kind == Kind::Form && self.sums[i as usize].chars <= total / 2 {
                self.kill(i);
            }
            let n = &self.nodes[i as usize];
            if matches!(n.kind, Kind::Div | Kind::Section | Kind::List) && is_comments(n) {
                self.kill(i);
            }
        }
        let empty: Vec<u32> = (1..self.nodes.len() as u32)
            .filter(|&i| {
                let n = &self.nodes[i as usize];
                cut_when_empty(n.name) && self.children(i).next().is_none()
            })
            .collect();
        for i in empty {
            // Precision mode deletes an empty block with the text after it.
            let following: Vec<u32> = self
                .after(i)
                .take_while(|&c| self.kind_of(c) == Kind::Text)
                .collect();
            self.kill(i);
            for t in following {
                self.kill(t);
            }
        }
        self.sum();
    }

    /// Recomputes [`Sums`] of every living node (children come after their parent).
    fn sum(&mut self) {
        for s in &mut self.sums {
            *s = Sums::default();
        }
        for i in (0..self.nodes.len()).rev() {
            if self.dead[i] {
                continue;
            }
            let n = &self.nodes[i];
            let mut s = self.sums[i];
            s.chars += n.chars;
            if n.kind == Kind::Ref {
                s.links += 1;
                let len = s.chars;
                if len > 0 {
                    s.text_links += 1;
                    s.link_chars += len;
                    if len < 10 {
                        s.short_links += 1;
                    }
                }
            }
            self.sums[i] = s;
            if n.parent != NONE {
                let p = &mut self.sums[n.parent as usize];
                p.chars += s.chars;
                p.links += s.links;
                p.text_links += s.text_links;
                p.short_links += s.short_links;
                p.link_chars += s.link_chars;
            }
        }
    }

    /// The most text readability could return: the cleaned page without what the
    /// boilerplate rules name (trafilatura's precision mode prunes readability's input so).
    /// Leaves the boilerplate dead and the sums stale: the caller restores both.
    fn fallback_bound(&mut self) -> usize {
        for i in 1..self.nodes.len() as u32 {
            if discarded(&self.nodes[i as usize]) {
                self.kill(i);
            }
        }
        self.sum();
        self.sums[0].chars as usize
    }

    /// Step 2: the first element the `frame`th content expression names.
    fn frame(&self, frame: usize) -> Option<u32> {
        self.descendants(0)
            .find(|&i| frame_matches(&self.nodes[i as usize], frame))
    }

    /// The characters of all paragraphs' text in the page (trafilatura's `//p//text()`).
    fn paragraph_chars(&self) -> usize {
        let mut chars = 0;
        let mut stack = vec![(0u32, false)];
        while let Some((i, in_p)) = stack.pop() {
            let n = &self.nodes[i as usize];
            if in_p && n.kind == Kind::Text {
                chars += n.text.chars().count();
            }
            let in_p = in_p || n.kind == Kind::P;
            stack.extend(self.children(i).map(|c| (c, in_p)));
        }
        chars
    }

    /// Step 2's pruning of `root`'s subtree (`prune_unwanted_sections`, precision).
    fn prune(&mut self, root: u32) {
        let under: Vec<u32> = self.descendants(root).collect();
        // Boilerplate by class and id, unless it would take more than 6/7 of the text.
        let matched: Vec<u32> = under
            .iter()
            .copied()
            .filter(|&i| discarded(&self.nodes[i as usize]))
            .collect();
        let outer = self.outermost(root, &matched);
        let old = self.sums[root as usize].chars as u64;
        let removed: u64 = outer
            .iter()
            .map(|&i| self.sums[i as usize].chars as u64)
            .sum();
        if (old - removed.min(old)) * 7 > old {
            for i in outer {
                self.kill(i);
            }
        }
        for i in under {
            if self.dead[i as usize] {
                continue;
            }
            let n = &self.nodes[i as usize];
            if n.kind == Kind::Header
                || (blockish(n.kind) && (precision_discarded(n) || caption(n) || teaser(n)))
            {
                self.kill(i);
            }
        }
        self.sum();
        for _ in 0..2 {
            self.by_link_density(root, Kind::Div, true);
            self.by_link_density(root, Kind::List, false);
            self.by_link_density(root, Kind::P, false);
        }
        let tables: Vec<u32> = self
            .descendants(root)
            .filter(|&i| self.kind_of(i) == Kind::Table && self.link_table(i))
            .collect();
        for i in tables {
            self.kill(i);
        }
        self.sum();
        while let Some(last) = self
            .children(root)
            .filter(|&c| self.kind_of(c) != Kind::Text)
            .last()
        {
            if self.kind_of(last) != Kind::Head {
                break;
            }
            self.kill(last);
        }
        self.by_link_density(root, Kind::Head, false);
        self.by_link_density(root, Kind::Quote, false);
    }

    /// The nodes of `set` (sorted) under `root` that have no ancestor in it below `root`.
    fn outermost(&self, root: u32, set: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut stack: Vec<u32> = self.children(root).collect();
        while let Some(i) = stack.pop() {
            if set.binary_search(&i).is_ok() {
                out.push(i);
            } else {
                stack.extend(self.children(i));
            }
        }
        out.sort_unstable();
        out
    }

    /// Deletes the `kind` elements under `root` that are mostly links
    /// (`delete_by_link_density`, precision thresholds).
    fn by_link_density(&mut self, root: u32, kind: Kind, backtracking: bool) {
        let doomed: Vec<u32> = self
            .descendants(root)
            .filter(|&i| self.kind_of(i) == kind)
            .filter(|&i| {
                let (boilerplate, short_with_links) = self.link_density(i);
                boilerplate
                    || (backtracking
                        && short_with_links
                        && self.children(i).any(|c| self.kind_of(c) != Kind::Text)
                        && self.sums[i as usize].chars < 200)
            })
            .filter(|&i| {
                let p = self.nodes[i as usize].parent;
                !(kind == Kind::P
                    && p != NONE
                    && matches!(self.kind_of(p), Kind::Item | Kind::Cell))
            })
            .collect();
        if !doomed.is_empty() {
            for i in doomed {
                self.kill(i);
            }
            self.sum();
        }
    }

    /// (boilerplate, short with links) of `link_density_test`.
    fn link_density(&self, i: u32) -> (bool, bool) {
        let s = self.sums[i as usize];
        if s.links == 0 {
            return (false, false);
        }
        let text = s.chars;
        if s.links == 1 && s.link_chars > 10 && f64::from(s.link_chars) > f64::from(text) * 0.9 {
            return (true, false);
        }
        let next = self.has_next_element(i);
        let limit = match (self.kind_of(i) == Kind::P, next) {
            (true, false) => 60,
            (true, true) => 30,
            (false, false) => 300,
            (false, true) => 100,
        };
        if text < limit {
            if s.text_links == 0 {
                return (true, false);
            }
            let dense = f64::from(s.link_chars) > f64::from(text) * 0.8
                || (s.text_links > 1 && f64::from(s.short_links) / f64::from(s.text_links) > 0.8);
            return (dense, true);
        }
        if s.links > 4
            && f64::from(s.link_chars) > f64::from(text) * 0.9
            && s.link_chars < 100 * s.text_links
            && !self.paragraph_listing(i)
        {
            return (true, false);
        }
        (false, false)
    }

    /// Every link alone in its own paragraph (a listing of documents, not a link farm).
    fn paragraph_listing(&self, i: u32) -> bool {
        self.descendants(i)
            .filter(|&d| self.kind_of(d) == Kind::Ref)
            .all(|r| {
                let p = self.nodes[r as usize].parent;
                p != NONE && self.kind_of(p) == Kind::P && self.sums[p as usize].links == 1
            })
    }

    /// A table of mostly links (`link_density_test_tables`).
    fn link_table(&self, i: u32) -> bool {
        let s = self.sums[i as usize];
        if s.links == 0 || s.chars < 200 {
            return false;
        }
        let (links, text) = (f64::from(s.link_chars), f64::from(s.chars));
        if s.chars < 1000 {
            links > 0.8 * text
        } else {
            links > 0.5 * text
        }
    }

    /// The frame holds one run of text: only line breaks and inline elements.
    fn is_single_run(&self, root: u32, div: bool) -> bool {
        let mut tags = self
            .descendants(root)
            .map(|d| self.kind_of(d))
            .filter(|&k| k != Kind::Text)
            .peekable();
        if tags.peek().is_none() {
            return false;
        }
        let tags: Vec<Kind> = tags.collect();
        tags.iter().all(|&k| k == Kind::Lb)
            || (self.kind_of(root) == Kind::Div
                && div
                && tags
                    .iter()
                    .all(|&k| matches!(k, Kind::Lb | Kind::Code | Kind::Ref | Kind::Span)))
    }

    /// The text before `i`'s first element child (lxml's `.text`), inline kinds flattened.
    fn lead_text(&self, i: u32) -> String {
        self.run_of_text(self.children(i))
    }

    /// The text that follows `i` up to its next block sibling (lxml's `.tail`).
    fn tail_text(&self, i: u32) -> String {
        self.run_of_text(self.after(i))
    }

    /// The text of `nodes` up to the first that is not text or inline.
    fn run_of_text(&self, nodes: impl Iterator<Item = u32>) -> String {
        let mut out = String::new();
        for c in nodes {
            match self.kind_of(c) {
                Kind::Text => out.push_str(self.nodes[c as usize].text),
                Kind::Ref | Kind::Span => self.node_text(c, &mut out),
                _ => break,
            }
        }
        out
    }

    /// Appends all the text under `i`: line breaks as `\n`, block children on lines of
    /// their own.
    fn inline(&self, i: u32, out: &mut String) {
        self.text_of(i, out, false);
    }

    /// [`Dom::inline`] of `i` itself: a link with `links` on as `[text](target)`.
    fn node_text(&self, i: u32, out: &mut String) {
        let link = self.links && self.kind_of(i) == Kind::Ref;
        if link {
            out.push('[');
        }
        let at = out.len();
        self.inline(i, out);
        if link {
            self.close_link(i, at, out);
        }
    }

    /// Ends the link `i` whose text starts at `out[at..]` (after its `[`): `](target)`,
    /// or, without text or target, the text alone (as Python trafilatura writes it).
    fn close_link(&self, i: u32, at: usize, out: &mut String) {
        let href = self.nodes[i as usize].href.trim();
        if out[at..].trim().is_empty() || href.is_empty() {
            out.remove(at - 1);
            return;
        }
        let target = self
            .base
            .and_then(|b| b.join(href).ok())
            .map_or_else(|| href.to_string(), String::from);
        out.push_str("](");
        out.push_str(&target);
        out.push(')');
    }

    /// Code as written: its text, line breaks kept.
    fn raw(&self, i: u32, out: &mut String) {
        self.text_of(i, out, true);
    }

    /// The text under `i` in document order, with an explicit stack (pages nest
    /// elements thousands deep). Not `raw`: block children on lines of their own, a
    /// space before a table cell.
    fn text_of(&self, i: u32, out: &mut String, raw: bool) {
        enum Step {
            Node(u32),
            Push(char),
            /// The end of link `.0`, whose text started at byte `.1`.
            CloseLink(u32, usize),
        }
        let mut stack: Vec<Step> = self.children(i).map(Step::Node).collect();
        stack.reverse();
        while let Some(step) = stack.pop() {
            let c = match step {
                Step::Push(ch) => {
                    out.push(ch);
                    continue;
                }
                Step::CloseLink(c, at) => {
                    self.close_link(c, at, out);
                    continue;
                }
                Step::Node(c) => c,
            };
            let k = self.kind_of(c);
            let (before, after) = match k {
                Kind::Text => {
                    out.push_str(self.nodes[c as usize].text);
                    continue;
                }
                Kind::Lb => {
                    out.push('\n');
                    continue;
                }
                _ if raw => (None, None),
                Kind::Ref | Kind::Span | Kind::Code => (None, None),
                Kind::Cell => (Some(' '), None),
                _ => (Some('\n'), Some('\n')),
            };
            if let Some(b) = before {
                out.push(b);
            }
            if let Some(a) = after {
                stack.push(Step::Push(a));
            }
            if self.links && k == Kind::Ref && !raw {
                out.push('[');
                stack.push(Step::CloseLink(c, out.len()));
            }
            let at = stack.len();
            stack.extend(self.children(c).map(Step::Node));
            stack[at..].reverse();
        }
    }

    /// Step 3 over the frame: each node in document order, a handled block's subtree
    /// skipped.
    fn walk(&self, root: u32, div: bool, out: &mut Blocks, consumed: &mut [bool]) {
        let mut stack: Vec<u32> = self.children(root).collect();
        stack.reverse();
        while let Some(i) = stack.pop() {
            if consumed[i as usize] {
                continue;
            }
            if !self.handle(i, div, out, consumed) {
                let at = stack.len();
                stack.extend(self.children(i));
                stack[at..].reverse();
            }
        }
    }

    /// `handle_textelem`: the block `i` makes, if any. True when its subtree is done.
    fn handle(&self, i: u32, div: bool, out: &mut Blocks, consumed: &mut [bool]) -> bool {
        let kind = self.kind_of(i);
        let done = match kind {
            Kind::P | Kind::Head | Kind::Quote => {
                let mut t = String::new();
                self.inline(i, &mut t);
                out.push(kind, t);
                true
            }
            Kind::List => {
                let mut lines = String::new();
                self.list(i, &mut lines);
                out.push(Kind::List, lines);
                true
            }
            Kind::Code => {
                let mut t = String::new();
                self.raw(i, &mut t);
                out.push(Kind::Code, t);
                true
            }
            Kind::Table => {
                out.push(Kind::Table, self.table(i));
                true
            }
            Kind::Lb => {
                out.push(Kind::P, self.tail_text(i));
                true
            }
            Kind::Div if div && !self.lead_text(i).trim().is_empty() => {
                let mut t = String::new();
                self.inline(i, &mut t);
                out.push(Kind::P, t);
                true
            }
            _ => false,
        };
        if done {
            consumed[i as usize] = true;
            if matches!(kind, Kind::Code | Kind::Quote | Kind::List | Kind::Table) {
                out.push(Kind::P, self.tail_text(i));
            }
        }
        done
    }

    /// The lines of a list: `- item`, a nested list's items after their item's line.
    fn list(&self, i: u32, out: &mut String) {
        // Lists still to write, innermost last (an explicit stack, as in `text_of`).
        let mut lists = vec![self.descendants_until(i, Kind::Item).into_iter()];
        while let Some(items) = lists.last_mut() {
            let Some(item) = items.next() else {
                lists.pop();
                continue;
            };
            let mut own = String::new();
            let mut nested = Vec::new();
            for c in self.children(item) {
                match self.kind_of(c) {
                    Kind::List => nested.push(c),
                    Kind::Text => own.push_str(self.nodes[c as usize].text),
                    Kind::Lb => own.push(' '),
                    _ => self.node_text(c, &mut own),
                }
            }
            if !own.trim().is_empty() {
                out.push_str("- ");
                out.push_str(&collapse(&own));
                out.push('\n');
            }
            let inner: Vec<u32> = nested
                .into_iter()
                .flat_map(|n| self.descendants_until(n, Kind::Item))
                .collect();
            if !inner.is_empty() {
                lists.push(inner.into_iter());
            }
        }
    }

    /// The `kind` nodes under `i` not under another `kind` or list below `i`.
    fn descendants_until(&self, i: u32, kind: Kind) -> Vec<u32> {
        let mut out = Vec::new();
        let mut stack: Vec<u32> = self.children(i).collect();
        stack.reverse();
        while let Some(n) = stack.pop() {
            let k = self.kind_of(n);
            if k == kind {
                out.push(n);
            } else if k != Kind::List {
                let at = stack.len();
                stack.extend(self.children(n));
                stack[at..].reverse();
            }
        }
        out
    }

    /// A table as rows `| a | b |`, a `|---|` line after a header row.
    fn table(&self, i: u32) -> String {
        let mut out = String::new();
        for (r, row) in self.descendants_until(i, Kind::Row).into_iter().enumerate() {
            let cells: Vec<u32> = self
                .children(row)
                .filter(|&c| self.kind_of(c) == Kind::Cell)
                .collect();
            if cells.is_empty() {
                continue;
            }
            out.push('|');
            for &c in &cells {
                let mut t = String::new();
                self.inline(c, &mut t);
                out.push(' ');
                out.push_str(&collapse(&t));
                out.push_str(" |");
            }
            out.push('\n');
            if r == 0
                && cells
                    .iter()
                    .all(|&c| self.nodes[c as usize].other & HEAD_CELL != 0)
            {
                out.push('|');
                for _ in &cells {
                    out.push_str("---|");
                }
                out.push('\n');
            }
        }
        out
    }

    /// Step 4: the paragraphs, quotes, code and tables of the whole page
    /// (`recover_wild_text`), not those the frames gave.
    fn recover(&mut self, out: &mut Blocks, consumed: &[bool]) {
        self.prune(0);
        let mut existing: String = out
            .0
            .iter()
            .map(|b| b.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let mut handled = vec![false; self.nodes.len()];
        // (node, under a node the frames or this recovery already took)
        let mut stack: Vec<(u32, bool)> = self.children(0).map(|c| (c, false)).collect();
        stack.reverse();
        while let Some((i, covered)) = stack.pop() {
            let covered = covered || consumed[i as usize];
            let kind = self.kind_of(i);
            if !covered && matches!(kind, Kind::P | Kind::Code | Kind::Quote | Kind::Table) {
                let mut one = Blocks::default();
                self.handle(i, false, &mut one, &mut handled);
                for b in one.0 {
                    // trafilatura's DEDUPE_SCAN_CAP: past it, only equal blocks are caught.
                    let dup = out.0.iter().any(|o| o.text == b.text)
                        || (b.text.chars().count() > 50
                            && existing.len() <= 200_000
                            && existing.contains(&b.text));
                    if !dup {
                        if existing.len() <= 200_000 {
                            existing.push('\n');
                            existing.push_str(&b.text);
                        }
                        out.0.push(b);
                    }
                }
                continue;
            }
            let at = stack.len();
            stack.extend(self.children(i).map(|c| (c, covered)));
            stack[at..].reverse();
        }
    }
}

impl<'a> Node<'a> {
    fn new(kind: Kind, name: &'a str, parent: u32) -> Self {
        Node {
            kind,
            name,
            parent,
            pos: 0,
            children: Vec::new(),
            text: "",
            chars: 0,
            href: "",
            id: "",
            class: "",
            style: "",
            role: "",
            itemprop: "",
            other: 0,
        }
    }

    fn attrs(&mut self, e: &'a scraper::node::Element) {
        for (k, v) in e.attrs() {
            match k {
                "id" => self.id = v,
                "href" => self.href = v,
                "class" => self.class = v,
                "style" => self.style = v,
                "role" => self.role = v,
                "itemprop" => self.itemprop = v,
                "aria-hidden" if v == "true" => self.other |= ARIA_HIDDEN,
                "data-lp-replacement-content" => self.other |= LP_REPLACEMENT,
                "data-component" if v.contains("MostPopularStories") => self.other |= MOST_POPULAR,
                _ => {}
            }
        }
        if e.name() == "th" {
            self.other |= HEAD_CELL;
        }
    }

    /// `@id|@class` in trafilatura's expressions: the first of them (id when both).
    fn id_or_class(&self) -> &'a str {
        if self.id.is_empty() {
            self.class
        } else {
            self.id
        }
    }
}

/// A `<pre>` that holds code: one `<span>` child, highlight.js spans, or code-like text.
fn looks_like_code(pre: ego_tree::NodeRef<'_, scraper::Node>) -> bool {
    let elements: Vec<_> = pre
        .children()
        .filter_map(|c| c.value().as_element())
        .collect();
    if elements.len() == 1 && elements[0].name() == "span" {
        return true;
    }
    let mut lead = String::new();
    for c in pre.children() {
        match c.value() {
            scraper::Node::Text(t) => lead.push_str(t),
            scraper::Node::Element(_) => break,
            _ => {}
        }
    }
    ["{", "(\"", "('", "\n    "]
        .iter()
        .any(|i| lead.contains(i))
        || pre.descendants().any(|d| {
            d.value().as_element().is_some_and(|e| {
                e.name() == "span" && e.attr("class").is_some_and(|c| c.starts_with("hljs"))
            })
        })
}

/// Tags `prune_html` deletes when empty.
fn cut_when_empty(name: &str) -> bool {
    matches!(
        name,
        "article"
            | "blockquote"
            | "dd"
            | "div"
            | "dt"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "li"
            | "main"
            | "p"
            | "pre"
            | "q"
            | "section"
            | "span"
    )
}

/// The kinds trafilatura's discard expressions look at (div, item, list, p, section,
/// span).
fn blockish(k: Kind) -> bool {
    matches!(
        k,
        Kind::Div | Kind::Item | Kind::List | Kind::P | Kind::Section | Kind::Span
    )
}

/// A comment section (`REMOVE_COMMENTS_XPATH`): id `comment…` (not `commentary`),
/// `comol`, Disqus; class `comment…` or `article-comments` / `post-comments`.
fn is_comments(n: &Node<'_>) -> bool {
    fn comment_start(s: &str) -> bool {
        (s.starts_with("comment") || s.starts_with("Comment")) && !s[7..].starts_with("ary")
    }
    let id = n.id;
    comment_start(id)
        || id.starts_with("comol")
        || id.starts_with("disqus_thread")
        || id.starts_with("dsq-comments")
        || comment_start(n.class)
        || n.class.contains("article-comments")
        || n.class.contains("post-comments")
}

/// How many content expressions [`frame_matches`] knows (`BODY_XPATH`).
const FRAMES: usize = 5;

fn regex(re: &str) -> Regex {
    Regex::new(re).unwrap_or_else(|e| unreachable!("a constant expression: {e}"))
}

static ARTICLE_ID: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        "(?:entry|article|art)-content|article__content|article(?:-|__)?body|articleBody|body-text",
    )
});
static ARTICLE_CLASS: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        "post[-_]text|post-body|post-?entry|post[-_]?content|postContent|post_inner_wrapper|\
         article-?text|articleText|(?:entry|page|text|article|art)-content|article__content|\
         article(?:-|__)?body|articleBody|ArticleContent|body-text|article__container",
    )
});
static STORY_ID: LazyLock<Regex> = LazyLock::new(|| regex("^primary|story-body"));
static STORY_CLASS: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        "(?i:fulltext)|^article |post-bodycopy|story-?content|(?:theme|blog|section|single)-content|\
         single-post|main-column|wpb_text_column|story-body|field-body",
    )
});
static MAIN_ID: LazyLock<Regex> =
    LazyLock::new(|| regex("content-main|content-body|contentBody|[mM]ain-content"));
static MAIN_CLASS: LazyLock<Regex> =
    LazyLock::new(|| regex("content[-_]main|content(?:-|__)body|[mM]ain-content|[pP]age-content"));

/// The `frame`th content expression (`BODY_XPATH`) names `n`.
fn frame_matches(n: &Node<'_>, frame: usize) -> bool {
    let k = n.kind;
    let block = matches!(k, Kind::Article | Kind::Div | Kind::Main | Kind::Section);
    match frame {
        0 => {
            block
                && (n.class == "post"
                    || n.class == "entry"
                    || n.itemprop == "articleBody"
                    || n.id == "articleContent"
                    || (!n.id.is_empty() && ARTICLE_ID.is_match(n.id))
                    || (!n.class.is_empty() && ARTICLE_CLASS.is_match(n.class)))
        }
        1 => k == Kind::Article,
        2 => {
            block
                && (n.role == "article"
                    || n.id == "article"
                    || n.id == "story"
                    || matches!(
                        n.class,
                        "postarea" | "art-postcontent" | "text" | "cell" | "story"
                    )
                    || (!n.id.is_empty() && STORY_ID.is_match(n.id))
                    || (!n.class.is_empty() && STORY_CLASS.is_match(n.class)))
        }
        3 => {
            block
                && (n.id == "content"
                    || n.class == "content"
                    || (!n.id.is_empty() && MAIN_ID.is_match(n.id))
                    || (!n.class.is_empty() && MAIN_CLASS.is_match(n.class)))
        }
        _ => {
            k == Kind::Main
                || (matches!(k, Kind::Article | Kind::Div | Kind::Section)
                    && (n.class.starts_with("main")
                        || n.id.starts_with("main")
                        || n.role.starts_with("main")))
        }
    }
}

static DISCARD_ID: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        "^shar|social|viral|newsletter|syndication|tags|sidebar|banner|bread-?crumb|button|author|\
         ^(?:jp-|dpsp-content)|bmdh|footer|Footer|share|Share|nav|Nav|menu|related|\
         message-container|premium|^ad-",
    )
});
static DISCARD_CLASS: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        "^shar|social|viral|newsletter|syndication|tags|sidebar|banner|bread-?crumb|button|author|\
         ^(?:nav|post-nav|ZendeskForm)|subnav|avigation|navbar|navbox|menu|bar| ad |-ad-|(?:^| )ad-|\
         dfp[Aa]d|outbrain|taboola|criteo|paid-?content|widget|footer|Footer|byline|Byline|share-|\
         sociable|embedded|embed|tag-list|consent|modal-content|permission|elated|next-|-stories|\
         most-popular|more-on|meta|rating|attachment|timestamp|user-info|user-profile|-icon|\
         article-infos|message-container|slide|viewport|overlay|options|expand|obfuscated|blurred|\
         mol-factbox|yin|zlylin|nfoline",
    )
});
static HIDDEN_CLASS: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        "^hide-|comments-title|nocomments|-reply-|message|akismet|suggest-links|-hide-|hide-print| \
         hidden| hide|noprint|notloaded",
    )
});
static PRECISION: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(^|\s)bottom|bottom(\s|$)|(^|\s)link(\s|$)"));

/// Boilerplate by class, id, role and style (`OVERALL_DISCARD_XPATH`).
fn discarded(n: &Node<'_>) -> bool {
    let by_name = blockish(n.kind)
        && (n.other & (LP_REPLACEMENT | MOST_POPULAR) != 0
            || n.role.replace('N', "n").contains("nav")
            || n.id_or_class().contains("cookie")
            || (!n.id.is_empty() && DISCARD_ID.is_match(n.id))
            || (!n.class.is_empty() && DISCARD_CLASS.is_match(n.class)));
    by_name
        || n.class == "comments-title"
        || n.id_or_class().starts_with("reply-")
        || (if n.id.is_empty() { n.style } else { n.id }).contains("hidden")
        || n.style.contains("display:none")
        || n.style.contains("display: none")
        || n.id.contains("reader-comments")
        || n.id.contains("akismet")
        || (!n.class.is_empty() && HIDDEN_CLASS.is_match(n.class))
        || n.other & ARIA_HIDDEN != 0
}

/// `PRECISION_DISCARD_XPATH` without `<header>`: `bottom` or `link` as a class or id
/// token, a border style.
fn precision_discarded(n: &Node<'_>) -> bool {
    let name = n.id_or_class();
    (!name.is_empty() && PRECISION.is_match(name)) || n.style.contains("border")
}

/// Captions (images are not kept).
fn caption(n: &Node<'_>) -> bool {
    n.id.contains("caption") || n.class.contains("caption")
}

fn teaser(n: &Node<'_>) -> bool {
    n.id.replace('T', "t").contains("teaser") || n.class.replace('T', "t").contains("teaser")
}

/// Characters of `s` with each whitespace run counted once.
fn collapsed_len(s: &str) -> u32 {
    let mut n = 0u32;
    let mut space = false;
    for c in s.chars() {
        if c.is_whitespace() {
            if !space {
                n += 1;
            }
            space = true;
        } else if c != '\u{ad}' {
            n += 1;
            space = false;
        }
    }
    n
}

/// `s` with whitespace runs as one space, trimmed, soft hyphens removed.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(w.chars().filter(|&c| c != '\u{ad}'));
    }
    out
}

#[derive(Debug)]
struct Block {
    kind: Kind,
    text: String,
}

impl Block {
    fn new(kind: Kind, text: String) -> Self {
        Block { kind, text }
    }
}

/// The blocks found so far, in order.
#[derive(Debug, Default)]
struct Blocks(Vec<Block>);

impl Blocks {
    /// Adds a block whose text is not blank (lines trimmed, blank lines dropped; code
    /// keeps its indentation).
    fn push(&mut self, kind: Kind, text: String) {
        let text = if kind == Kind::Code {
            text.trim_matches('\n').to_string()
        } else {
            text.lines()
                .map(collapse)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if text.trim().is_empty() || filtered(&text) {
            return;
        }
        self.0.push(Block::new(kind, text));
    }

    fn chars(&self) -> usize {
        self.0
            .iter()
            .map(|b| b.text.chars().count() + 1)
            .sum::<usize>()
            .saturating_sub(1)
    }

    /// A long block repeating the one before it goes.
    fn drop_repeats(&mut self) {
        let mut kept: Vec<Block> = Vec::with_capacity(self.0.len());
        for b in self.0.drain(..) {
            if kept
                .last()
                .is_some_and(|p| p.text == b.text && b.text.chars().count() > 50)
            {
                continue;
            }
            kept.push(b);
        }
        self.0 = kept;
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for b in &self.0 {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(b.text.trim_end_matches('\n'));
        }
        out
    }
}

static SOCIAL: LazyLock<Regex> = LazyLock::new(|| {
    regex(
        r"(?i)^\W*(Drucken|E-?Mail|Facebook|Flipboard|Google|Instagram|Linkedin|Mail|PDF|Pinterest|Pocket|Print|QQ|Reddit|Twitter|WeChat|WeiBo|Whatsapp|Xing|Mehr zum Thema:?|More on this.{0,8})$",
    )
});

/// A block that is only a share button's label (trafilatura's `textfilter`).
fn filtered(text: &str) -> bool {
    text.lines().any(|l| SOCIAL.is_match(l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of tag soup: tags opened and closed in any order, with the classes the rules
    /// look at, and words (each followed by a space, so no two run together).
    const PIECES: &[&str] = &[
        "<p>",
        "</p>",
        "<div>",
        "</div>",
        "<div class=content>",
        "<div class=sidebar>",
        "<article>",
        "</article>",
        "<ul>",
        "</ul>",
        "<li>",
        "</li>",
        "<a href=/x>",
        "</a>",
        "<span>",
        "</span>",
        "<b>",
        "</b>",
        "<table>",
        "<tr>",
        "<td>",
        "<th>",
        "</table>",
        "<nav>",
        "</nav>",
        "<script>",
        "</script>",
        "<pre>",
        "</pre>",
        "<br>",
        "<h2>",
        "</h2>",
        "<header>",
        "</header>",
        "<blockquote>",
        "<main>",
        "<form>",
        "</form>",
        "<div style='display:none'>",
        "<p id=comments>",
    ];
    const WORDS: &[&str] = &[
        "river ", "hill ", "bee ", "honey ", "stone ", "north ", "x ",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

        /// On any tag soup the rules finish, and every word they give is a word of the page
        /// (or a list or table marker): nothing is invented, nothing is cut in two.
        #[test]
        fn any_tag_soup_gives_words_of_the_page_only(
            pieces in proptest::collection::vec((0..PIECES.len(), 0..WORDS.len(), any::<bool>()), 0..120)
        ) {
            let mut page = String::from("<html><body>");
            for (tag, word, is_word) in pieces {
                page.push_str(if is_word { WORDS[word] } else { PIECES[tag] });
            }
            let e = extract(&page, &Rules::default());
            for w in e.text.split_whitespace() {
                let marker = w == "-" || w.chars().all(|c| c == '|' || c == '-');
                prop_assert!(marker || WORDS.iter().any(|v| v.trim() == w), "{w:?} in {:?} from {page}", e.text);
            }
            prop_assert_eq!(extract(&page, &Rules::default()), e);
        }
    }

    fn text(html: &str) -> String {
        extract(html, &Rules::default()).text
    }

    #[test]
    fn the_article_is_kept_and_navigation_header_footer_and_sidebar_left_out() {
        let page = "<html><body><header><h1>Site</h1></header><nav><a href=/>Home</a></nav>\
            <div class=sidebar><p>Popular posts and other things</p></div>\
            <article><h1>Bees</h1><p>Every summer the village kept bees on the hill.</p>\
            <p>The hives were moved in spring, when the <b>first</b> flowers opened.</p></article>\
            <footer>Copyright</footer></body></html>";
        let t = text(page);
        assert_eq!(
            t,
            "Bees\nEvery summer the village kept bees on the hill.\nThe hives were moved in spring, \
             when the first flowers opened."
        );
    }

    #[test]
    fn lists_tables_code_and_line_breaks_are_lines() {
        let page = "<body><main><p>One<br>two</p><ul><li>a <i>b</i></li><li>c<ul><li>d</li></ul></li></ul>\
            <table><tr><th>x</th><th>y</th></tr><tr><td>1</td><td>2</td></tr></table>\
            <pre>fn main() {\n    go();\n}</pre></main></body>";
        assert_eq!(
            text(page),
            "One\ntwo\n- a b\n- c\n- d\n| x | y |\n|---|---|\n| 1 | 2 |\nfn main() {\n    go();\n}"
        );
    }

    #[test]
    fn link_farms_and_hidden_or_comment_blocks_go() {
        let farm: String = (0..8)
            .map(|i| format!("<li><a href=/{i}>Link {i}</a></li>"))
            .collect();
        let body =
            "A paragraph long enough to be the content of this page, about rivers and hills.";
        let page = format!(
            "<body><div class=content><p>{body}</p><ul>{farm}</ul><div style='display:none'>secret</div>\
             <div id=comments><p>First!</p></div><p>{body} Again.</p></div></body>"
        );
        let t = text(&page);
        assert_eq!(t, format!("{body}\n{body} Again."));
    }

    #[test]
    fn without_a_frame_the_pages_paragraphs_are_recovered() {
        let page = "<html><body><nav>Home</nav><p>First paragraph of text.</p><div><p>Second one.</p></div>\
            <footer>Example</footer></body></html>";
        let e = extract(page, &Rules::default());
        assert_eq!(e.text, "First paragraph of text.\nSecond one.");
        assert!(e.fallback);
        assert_eq!(
            extract("<html><body></body></html>", &Rules::default()).text,
            ""
        );
    }

    #[test]
    fn links_are_written_as_python_trafilatura_writes_them() {
        let page = "<body><article><p>Bees on the <a href='/hill'>hill <b>above</b></a>, see \
            <a href='https://x.org/a'>this</a> and <a>no target</a> and <a href=/e> </a>.</p>\
            <ul><li>the <a href=/li>item</a> of a list, with words of its own</li></ul></article></body>";
        let base = url::Url::parse("https://example.org/page/").expect("url");
        let rules = Rules {
            links: true,
            base: Some(&base),
            ..Rules::default()
        };
        assert_eq!(
            extract(page, &rules).text,
            "Bees on the [hill above](https://example.org/hill), see [this](https://x.org/a) and \
             no target and .\n- the [item](https://example.org/li) of a list, with words of its own"
        );
        let rules = Rules {
            links: true,
            ..Rules::default()
        };
        assert!(extract(page, &rules).text.contains("[hill above](/hill)"));
        assert!(!extract(page, &Rules::default()).text.contains('['));
    }

    #[test]
    fn pages_nested_deeper_than_any_stack_are_read() {
        let deep = 5_000;
        let page = format!(
            "<body><article><p>{}words{}</p><ul>{}<li>item</li>{}</ul></article></body>",
            "<span>".repeat(deep),
            "</span>".repeat(deep),
            "<li><ul>".repeat(deep),
            "</ul></li>".repeat(deep)
        );
        let e = extract(&page, &Rules::default());
        assert!(
            e.text.contains("words") && e.text.contains("- item"),
            "{e:?}"
        );
        let e = extract(&"<div>".repeat(deep), &Rules::default());
        assert_eq!(e.text, "");
    }

    #[test]
    fn pages_where_readability_could_find_twice_the_text_ask_for_the_fallback() {
        let para = "Rivers run down from the hills to the sea, and the villages along them fish. ";
        let article = format!(
            "<article><p>{}</p><p>{}</p></article>",
            para.repeat(3),
            para.repeat(2)
        );
        let e = extract(&format!("<body>{article}</body>"), &Rules::default());
        assert!(!e.fallback, "the rules took all there is: {e:?}");
        // As much text again outside the frame, in blocks no boilerplate rule names:
        // readability could return more than twice the rules' text.
        let outside = format!("<div><p>{}</p></div>", para.repeat(12));
        let e = extract(
            &format!("<body>{article}{outside}</body>"),
            &Rules::default(),
        );
        assert!(e.fallback && e.text.starts_with("Rivers"), "{e:?}");
        // The same text in a sidebar is boilerplate: it does not count.
        let sidebar = format!("<div class=sidebar><p>{}</p></div>", para.repeat(12));
        assert!(
            !extract(
                &format!("<body>{article}{sidebar}</body>"),
                &Rules::default()
            )
            .fallback
        );
    }

    #[test]
    fn a_div_with_text_of_its_own_is_a_paragraph_when_paragraphs_are_few() {
        let page = "<body><div id=content><div>Loose text <span>in a</span> div</div><div>and more</div></div></body>";
        assert_eq!(text(page), "Loose text in a div\nand more");
    }
}
