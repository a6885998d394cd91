//! `html.extract`: the main content of an HTML page as plain text — navigation, headers,
//! footers, sidebars and other boilerplate left out — as datatrove's FineWeb recipe does
//! with Python's trafilatura.
//!
//! Two engines. `kiln` (the default, `rules.rs`) applies Python trafilatura's precision
//! rules (content expressions, boilerplate by class and id, link density) in one linear
//! pass; a page on which they find less than trafilatura's minimum (250 characters) goes,
//! with `fallback`, to the `trafilatura` engine, which is also used for `focus: balanced
//! | recall` and `comments: true`. `trafilatura` is the crate of that name, a Rust port of
//! go-trafilatura (itself a port of the Python package) with readability and a baseline
//! as fallbacks. Both engines' agreement with the Python package on real pages is
//! measured in docs/text.md and checked by tests/html.rs. Each page is extracted on its
//! own, on every thread.
//!
//! A page with no main content (an index of links, an empty page) gives no text: by
//! default the row is left out and counted (`empty`), as datatrove drops documents its
//! extractor empties; `keep_empty: true` keeps it with a null text. A page the extractor
//! fails on for another reason is a bad row under `run.on_error`.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{put_column, string_column, utf8, value, with_field};
use crate::steps::{Step, StepContext, StepError, StepOptions};

/// Options of `html.extract`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractOptions {
    /// The HTML column (text: decode page bytes with `text.decode` first).
    #[serde(default = "default_column")]
    pub column: String,
    /// The column to write the extracted text to (default: the HTML column, replaced).
    #[serde(default)]
    pub output: Option<String>,
    /// `precision` (less boilerplate, may miss some content; datatrove's default),
    /// `balanced`, or `recall` (more content, more boilerplate).
    #[serde(default)]
    pub focus: Focus,
    /// Where Python trafilatura would compare the rules' text with readability's: the
    /// kiln engine hands those pages to the trafilatura engine, which runs readability
    /// and a baseline (slower, closer to Python trafilatura). Default true.
    #[serde(default = "default_true")]
    pub fallback: bool,
    /// Keep the text of tables (default true).
    #[serde(default = "default_true")]
    pub tables: bool,
    /// Keep user comments below the content (default false, as datatrove does).
    #[serde(default)]
    pub comments: bool,
    /// Keep links in the text as `[text](target)`, as Python trafilatura's
    /// `include_links` writes them (default false: their text only). The kiln engine's:
    /// with it, pages are not handed to the trafilatura engine, whose text has no links.
    #[serde(default)]
    pub links: bool,
    /// The column holding each page's URL (a WARC's `url`): relative link targets are
    /// made absolute against it.
    #[serde(default)]
    pub url: Option<String>,
    /// Keep rows whose page has no main content, with a null text (default false: they
    /// are left out and counted as `empty`).
    #[serde(default)]
    pub keep_empty: bool,
    /// `kiln` (default): kiln's own pass of trafilatura's precision rules, with the
    /// `trafilatura` engine for the pages where trafilatura's fallbacks could choose
    /// another text (when `fallback`), and for `focus: balanced | recall` or
    /// `comments: true`; `trafilatura`: the Rust port of trafilatura for every page
    /// (about 10x slower; docs/text.md compares them).
    #[serde(default)]
    pub engine: Engine,
}

/// Which extractor `html.extract` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    #[default]
    Kiln,
    Trafilatura,
}

/// What the extractor favours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Focus {
    #[default]
    Precision,
    Balanced,
    Recall,
}

fn default_column() -> String {
    "text".into()
}
fn default_true() -> bool {
    true
}

impl StepOptions for ExtractOptions {
    const SUMMARY: &'static str = "main-content text of HTML pages (trafilatura's precision rules): \
         boilerplate out, pages without content left out and counted";
    const EXAMPLE: &'static str = "- html.extract: { column: text, focus: precision }";

    fn bind(&self, input: &SchemaRef) -> Result<Arc<dyn Step>, String> {
        let source = string_column(input, &self.column)?;
        if self.links
            && (self.engine != Engine::Kiln || self.focus != Focus::Precision || self.comments)
        {
            return Err(
                "`links: true` is the kiln engine's, with `focus: precision` and no \
                        `comments` (the trafilatura engine's text has no links): remove \
                        `engine: trafilatura`, `focus` or `comments`, or `links`"
                    .into(),
            );
        }
        let url = self
            .url
            .as_ref()
            .map(|c| string_column(input, c))
            .transpose()?;
        let output = self.output.clone().unwrap_or_else(|| self.column.clone());
        let (schema, out) = with_field(input, &output, Field::new(&output, DataType::Utf8, true));
        let mut options = trafilatura::Options::default()
            .with_focus(match self.focus {
                Focus::Precision => trafilatura::ExtractionFocus::FavorPrecision,
                Focus::Balanced => trafilatura::ExtractionFocus::Balanced,
                Focus::Recall => trafilatura::ExtractionFocus::FavorRecall,
            })
            .with_fallback(self.fallback)
            .with_exclude_tables(!self.tables)
            .with_exclude_comments(!self.comments)
            .with_html_date_mode(trafilatura::HtmlDateMode::Disabled);
        options.deduplicate = false;
        Ok(Arc::new(Extract {
            opts: self.clone(),
            output,
            options,
            source,
            url,
            out,
            schema,
        }))
    }
}

#[derive(Debug)]
struct Extract {
    opts: ExtractOptions,
    output: String,
    options: trafilatura::Options,
    source: usize,
    url: Option<usize>,
    out: usize,
    schema: SchemaRef,
}

impl Extract {
    /// The main text of one page, `None` when it has none, and whether the
    /// `trafilatura` engine gave it while the engine asked for is `kiln`.
    ///
    /// # Errors
    /// The extractor failed on the page (not for lack of content).
    fn text(
        &self,
        html: &str,
        url: Option<&str>,
    ) -> Result<(Option<String>, bool), trafilatura::TrafilaturaError> {
        let own = self.opts.engine == Engine::Kiln
            && self.opts.focus == Focus::Precision
            && !self.opts.comments;
        if own {
            let base = url.and_then(|u| url::Url::parse(u).ok());
            let rules = super::rules::Rules {
                tables: self.opts.tables,
                links: self.opts.links,
                base: base.as_ref(),
            };
            let found = super::rules::extract(html, &rules);
            if !found.fallback || !self.opts.fallback || self.opts.links {
                return Ok(((!found.text.is_empty()).then_some(found.text), false));
            }
        }
        let text = match trafilatura::extract(html, &self.options) {
            Ok(r) => main_text(&r, self.opts.comments),
            Err(trafilatura::TrafilaturaError::InsufficientContent { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok((text, own))
    }
}

/// The trimmed content (and comments, when asked for) of an extraction; `None` when
/// empty.
fn main_text(r: &trafilatura::ExtractResult, comments: bool) -> Option<String> {
    let mut text = r.content_text.trim().to_string();
    if comments && !r.comments_text.trim().is_empty() {
        text.push_str("\n\n");
        text.push_str(r.comments_text.trim());
    }
    (!text.is_empty()).then_some(text)
}

/// The bad row a failed extraction makes.
fn failed(e: trafilatura::TrafilaturaError, column: &str, row: usize) -> StepError {
    StepError::data(format!("the extractor failed on this page: {e}"))
        .in_column(column)
        .at_row(row)
}

impl Step for Extract {
    fn batch_local(&self) -> bool {
        true
    }

    fn output_schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn required_input(&self, downstream: &BTreeSet<String>) -> BTreeSet<String> {
        let mut need = downstream.clone();
        need.remove(&self.output);
        need.insert(self.opts.column.clone());
        need.extend(self.opts.url.clone());
        need
    }

    fn apply(&self, batch: RecordBatch, cx: &mut StepContext) -> Result<RecordBatch, StepError> {
        let pages = utf8(batch.column(self.source)).map_err(StepError::internal)?;
        let urls = self
            .url
            .map(|u| utf8(batch.column(u)))
            .transpose()
            .map_err(StepError::internal)?;
        let texts: Vec<Result<(Option<String>, bool), trafilatura::TrafilaturaError>> =
            crate::pool::par_rows(pages.len(), 4, |i| {
                let url = urls.as_ref().and_then(|u| value(u, i));
                value(&pages, i).map_or(Ok((None, false)), |h| self.text(h, url))
            });
        // A page the extractor fails on (its HTML cannot be parsed, say) is a bad row
        // under run.on_error, not an empty page.
        let texts = texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.map_err(|e| failed(e, &self.opts.column, i)))
            .collect::<Result<Vec<_>, _>>()?;
        // Pages the kiln engine handed to the trafilatura engine (see rules.rs).
        let ported = texts.iter().filter(|t| t.1).count();
        let texts: Vec<Option<String>> = texts.into_iter().map(|t| t.0).collect();
        let empty = texts.iter().filter(|t| t.is_none()).count();
        cx.count("extracted", (texts.len() - empty) as u64);
        cx.count("empty", empty as u64);
        if self.opts.engine == Engine::Kiln {
            cx.count("fallback", ported as u64);
        }
        let column: ArrayRef = Arc::new(StringArray::from(texts));
        let out = put_column(&batch, &self.schema, self.out, column.clone())
            .map_err(StepError::internal)?;
        if self.opts.keep_empty || empty == 0 {
            return Ok(out);
        }
        let keep =
            arrow::compute::is_not_null(&column).map_err(|e| StepError::internal(e.to_string()))?;
        filter_record_batch(&out, &keep).map_err(|e| StepError::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pages` through `html.extract` with options `yaml`: the rows out and the counts.
    fn run(yaml: &str, pages: Vec<Option<&str>>) -> (RecordBatch, StepContext) {
        let opts: ExtractOptions = serde_saphyr::from_str(yaml).expect("options");
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![Field::new(
            "text",
            DataType::Utf8,
            true,
        )]));
        let step = opts.bind(&schema).expect("binds");
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(pages))]).expect("batch");
        let mut cx = StepContext::default();
        let out = step.apply(batch, &mut cx).expect("apply");
        (out, cx)
    }

    const PAGE: &str = "<html><head><title>Bees</title></head><body>\
        <nav><a href='/'>Home</a> | <a href='/about'>About</a> | <a href='/shop'>Shop</a></nav>\
        <article><h1>Keeping bees in a small village</h1>\
        <p>Every summer the village kept bees on the hill above the river, and the honey \
        they made was sold at the market to travellers from the north.</p>\
        <p>The hives were moved in spring, when the first flowers opened, and carried back \
        down in autumn before the cold came over the water.</p></article>\
        <footer>Copyright 2026 Example Ltd. All rights reserved. Privacy policy.</footer>\
        </body></html>";

    #[test]
    fn the_article_is_kept_and_the_navigation_and_footer_left_out() {
        let (out, _) = run("{}", vec![Some(PAGE)]);
        let text = utf8(out.column(0)).expect("text");
        let text = text.value(0);
        assert!(
            text.contains("Every summer the village kept bees"),
            "{text}"
        );
        assert!(text.contains("carried back down in autumn"), "{text}");
        assert!(!text.contains("Privacy policy"), "{text}");
        assert!(!text.contains("Shop"), "{text}");
    }

    #[test]
    fn both_engines_keep_the_article_and_kiln_counts_the_pages_it_hands_on() {
        let (kiln, cx) = run("{}", vec![Some(PAGE)]);
        let (port, _) = run("{ engine: trafilatura }", vec![Some(PAGE)]);
        for out in [&kiln, &port] {
            let text = utf8(out.column(0)).expect("text");
            assert!(
                text.value(0).contains("carried back down in autumn"),
                "{}",
                text.value(0)
            );
            assert!(
                !text.value(0).contains("Privacy policy"),
                "{}",
                text.value(0)
            );
        }
        assert_eq!(cx.counts.get("fallback"), Some(&0));
        // Without its second paragraph the article is under trafilatura's 250-character
        // minimum: the kiln engine hands the page to the trafilatura engine, and says so.
        let cut = PAGE.find("<p>The hives").expect("PAGE");
        let short = format!(
            "{}{}",
            &PAGE[..cut],
            &PAGE[PAGE.find("</article>").expect("PAGE")..]
        );
        let (out, cx) = run("{}", vec![Some(&short)]);
        assert_eq!(cx.counts.get("fallback"), Some(&1));
        assert!(
            utf8(out.column(0))
                .expect("text")
                .value(0)
                .contains("Every summer")
        );
        let (_, cx) = run("{ fallback: false }", vec![Some(&short)]);
        assert_eq!(cx.counts.get("fallback"), Some(&0));
    }

    #[test]
    fn links_are_kept_against_the_pages_url_and_refused_where_the_engine_cannot() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            Field::new("text", DataType::Utf8, true),
            Field::new("url", DataType::Utf8, true),
        ]));
        let page = PAGE.replace("carried back", "carried <a href='/down'>back down</a> and");
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![Some(page.as_str())])),
                Arc::new(StringArray::from(vec![Some("https://bees.example/a/")])),
            ],
        )
        .expect("batch");
        let opts: ExtractOptions =
            serde_saphyr::from_str("{ links: true, url: url }").expect("options");
        let out = opts
            .bind(&schema)
            .expect("binds")
            .apply(batch, &mut StepContext::default())
            .expect("apply");
        let text = utf8(out.column(0)).expect("text").value(0).to_string();
        assert!(
            text.contains("[back down](https://bees.example/down)"),
            "{text}"
        );
        for bad in [
            "{ links: true, engine: trafilatura }",
            "{ links: true, comments: true }",
        ] {
            let opts: ExtractOptions = serde_saphyr::from_str(bad).expect("options");
            let Err(e) = opts.bind(&schema) else {
                panic!("{bad} is refused")
            };
            assert!(e.contains("`links: true` is the kiln engine's"), "{e}");
        }
    }

    #[test]
    fn a_failed_extraction_is_a_bad_row_naming_the_row_and_the_reason() {
        let e = failed(
            trafilatura::TrafilaturaError::ParseError("unexpected end".into()),
            "text",
            7,
        );
        assert_eq!((e.row, e.column.as_deref()), (Some(7), Some("text")));
        let e = e.to_string();
        assert!(e.contains("`text`") && e.contains("unexpected end"), "{e}");
    }

    #[test]
    fn a_page_without_content_is_left_out_and_counted_or_kept_null() {
        let pages = vec![Some(PAGE), Some("<html><body></body></html>"), None];
        let (out, cx) = run("{}", pages.clone());
        assert_eq!(out.num_rows(), 1);
        assert_eq!(cx.counts.get("empty"), Some(&2));
        assert_eq!(cx.counts.get("extracted"), Some(&1));
        let (kept, _) = run("{ keep_empty: true, output: main }", pages);
        assert_eq!(kept.num_rows(), 3);
        assert_eq!(kept.column_by_name("main").expect("main").null_count(), 2);
    }
}
