//! SQL expressions over Arrow batches, parsed, type-checked and evaluated by
//! DataFusion's expression layer: sqlparser → logical `Expr` (datafusion-sql) → type
//! coercion (datafusion-optimizer's `ExprSimplifier::coerce`) → `PhysicalExpr`
//! evaluated on whole arrays (datafusion-physical-expr), with DataFusion's scalar
//! function library. kiln has no expression parser of its own; it uses the pieces a
//! DataFusion `SessionContext` uses for `parse_sql_expr` + `create_physical_expr`,
//! without the query engine around them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use arrow::array::ArrayRef;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion_common::config::ConfigOptions;
use datafusion_common::{DFSchema, DataFusionError, TableReference, plan_err};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::simplify::SimplifyContext;
use datafusion_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion_optimizer::simplify_expressions::ExprSimplifier;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_sql::parser::DFParserBuilder;
use datafusion_sql::planner::{PlannerContext, SqlToRel};

/// The scalar functions (`length`, `lower`, `regexp_like`, `date_trunc`, ...) and the
/// planners for SQL syntax that maps to functions (`||`, `POSITION`, `SUBSTRING ... FROM`,
/// `EXTRACT`). Built once.
struct Functions {
    udfs: HashMap<String, Arc<ScalarUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
}

static FUNCTIONS: LazyLock<Functions> = LazyLock::new(|| {
    let mut udfs = HashMap::new();
    for f in datafusion_functions::all_default_functions() {
        for alias in f.aliases() {
            udfs.insert(alias.clone(), f.clone());
        }
        udfs.insert(f.name().to_string(), f);
    }
    let planners: Vec<Arc<dyn ExprPlanner>> = vec![
        Arc::new(datafusion_functions::core::planner::CoreFunctionPlanner::default()),
        Arc::new(datafusion_functions::datetime::planner::DatetimeFunctionPlanner),
        Arc::new(datafusion_functions::unicode::planner::UnicodeFunctionPlanner),
    ];
    Functions {
        udfs,
        planners,
        options: ConfigOptions::default(),
    }
});

impl ContextProvider for Functions {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        plan_err!("`{name}`: expressions cannot read tables")
    }
    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }
    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.udfs.get(name).cloned()
    }
    fn get_higher_order_meta(&self, _: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }
    fn get_aggregate_meta(&self, _: &str) -> Option<Arc<AggregateUDF>> {
        None
    }
    fn get_window_meta(&self, _: &str) -> Option<Arc<WindowUDF>> {
        None
    }
    fn get_variable_type(&self, _: &[String]) -> Option<DataType> {
        None
    }
    fn options(&self) -> &ConfigOptions {
        &self.options
    }
    fn udf_names(&self) -> Vec<String> {
        self.udfs.keys().cloned().collect()
    }
    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udaf_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// An expression compiled for one input schema.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    sql: String,
    physical: Arc<dyn PhysicalExpr>,
    /// The type of the values it produces.
    pub data_type: DataType,
    /// The input columns it reads.
    pub columns: BTreeSet<String>,
}

fn plan(
    sql: &str,
    schema: &SchemaRef,
) -> datafusion_common::Result<(Arc<dyn PhysicalExpr>, BTreeSet<String>)> {
    let functions = &*FUNCTIONS;
    let df_schema = Arc::new(DFSchema::try_from(schema.as_ref().clone())?);
    let parsed = DFParserBuilder::new(sql).build()?.parse_into_expr()?;
    let logical = SqlToRel::new(functions).sql_to_expr(
        parsed.expr,
        &df_schema,
        &mut PlannerContext::new(),
    )?;
    let columns = logical
        .column_refs()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let context = SimplifyContext::builder()
        .with_schema(df_schema.clone())
        .with_config_options(Arc::new(functions.options.clone()))
        .build();
    let coerced = ExprSimplifier::new(context).coerce(logical, &df_schema)?;
    let physical = datafusion_physical_expr::create_physical_expr(
        &coerced,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )?;
    Ok((physical, columns))
}

impl CompiledExpr {
    /// Parses and type-checks `sql` against `schema`.
    ///
    /// # Errors
    /// A message naming the expression: syntax errors, unknown columns (with the list of
    /// valid ones), unknown functions, type errors.
    pub fn compile(sql: &str, schema: &SchemaRef) -> Result<Self, String> {
        check_size(sql)?;
        let fail = |e: DataFusionError| format!("expression `{sql}`: {}", clean(&e));
        // Planned on a thread of its own with room for DataFusion's recursion (see
        // `MAX_TOKENS`), whatever thread asks.
        let (physical, columns) = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("kiln-expr".into())
                .stack_size(PLAN_STACK)
                .spawn_scoped(s, || plan(sql, schema))
                .map_err(|e| format!("cannot start a thread to plan an expression: {e}"))?
                .join()
                .map_err(|_| format!("expression `{sql}`: planning it panicked"))
        })?
        .map_err(fail)?;
        let data_type = physical.data_type(schema).map_err(fail)?;
        Ok(CompiledExpr {
            sql: sql.to_string(),
            physical,
            data_type,
            columns,
        })
    }

    /// Evaluates the expression on every row of `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, String> {
        self.physical
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| format!("expression `{}`: {}", self.sql, clean(&e)))
    }

    /// The expression text as written.
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// The most tokens an expression may have. DataFusion parses, plans and evaluates an
/// expression by recursion, so a chain of thousands of operators (`a + a + a ...`)
/// overflows a thread's stack and aborts the process; no real filter comes near this.
pub const MAX_TOKENS: usize = 1000;

/// Stack of the thread an expression is planned on: DataFusion's planner recurses once
/// or more per operator, with large frames where it is not optimised (the test build).
const PLAN_STACK: usize = 64 << 20;

/// Refuses an expression past [`MAX_TOKENS`] before DataFusion sees it (counted by
/// sqlparser's tokenizer, which does not recurse).
fn check_size(sql: &str) -> Result<(), String> {
    use datafusion_sql::sqlparser::dialect::GenericDialect;
    use datafusion_sql::sqlparser::tokenizer::{Token, Tokenizer};
    let short: String = match sql.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &sql[..at]),
        None => sql.to_string(),
    };
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| format!("expression `{short}`: {e}"))?;
    let n = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .count();
    if n > MAX_TOKENS {
        return Err(format!(
            "expression `{short}` is too long: {n} tokens, at most {MAX_TOKENS}; split it \
             across several `derive` columns"
        ));
    }
    Ok(())
}

/// DataFusion prefixes messages with its own context lines; keep the useful part.
fn clean(e: &DataFusionError) -> String {
    let s = e.strip_backtrace();
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::test_util;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;

    #[test]
    fn evaluates_length_on_unicode() {
        let e = CompiledExpr::compile("length(text)", &test_util::schema()).expect("compiles");
        let out = e.evaluate(&test_util::batch()).expect("evaluates");
        let out = out.as_primitive::<Int32Type>();
        assert_eq!(out.value(3), 11);
        assert!(out.is_null(2));
        assert_eq!(e.columns, BTreeSet::from(["text".to_string()]));
    }

    #[test]
    fn unknown_column_lists_valid_ones() {
        let err =
            CompiledExpr::compile("length(txt) > 3", &test_util::schema()).expect_err("bad column");
        assert!(err.contains("txt") && err.contains("text"), "{err}");
    }

    /// Expressions reach the batch's columns and pure functions, nothing else: no table
    /// functions or subqueries (which could name files or URLs), no statements, no
    /// session settings, no extension loading.
    #[test]
    fn expressions_cannot_read_files_or_reach_the_network() {
        let hostile = [
            "(SELECT 1) = 1",
            "text IN (SELECT * FROM '/etc/passwd')",
            "EXISTS (SELECT 1)",
            "read_csv('/etc/passwd') IS NOT NULL",
            "read_parquet('s3://bucket/key') IS NOT NULL",
            "length(pg_read_file('/etc/passwd')) > 0",
            "load_extension('httpfs') IS NULL",
            "length(url_get('http://127.0.0.1/')) > 0",
            "1 = 1; COPY (SELECT 1) TO '/tmp/x.csv'",
            "1 = 1; SET datafusion.catalog.information_schema = true",
            "1 = 1; CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "length(current_setting('x')) > 0",
        ];
        for sql in hostile {
            let got = CompiledExpr::compile(sql, &test_util::schema());
            assert!(got.is_err(), "`{sql}` must not compile");
        }
        // DataFusion's scan-time placeholders: they only error outside a table scan.
        for sql in ["input_file_name() = 'x'", "file_row_index() > 0"] {
            if let Ok(e) = CompiledExpr::compile(sql, &test_util::schema()) {
                assert!(
                    e.evaluate(&test_util::batch()).is_err(),
                    "`{sql}` evaluates"
                );
            }
        }
        // No function of the library kiln compiles against touches files or sockets.
        for name in FUNCTIONS.udfs.keys() {
            for word in [
                "read", "file", "url", "http", "load", "copy", "exec", "system",
            ] {
                assert!(
                    !name.to_lowercase().contains(word) || ALLOWED_NAMES.contains(&name.as_str()),
                    "function `{name}` is in the expression library"
                );
            }
        }
    }

    /// The longest expression allowed compiles and evaluates on a thread with the stack
    /// of kiln's CPU threads (16 MiB), in the unoptimised test build; a longer one is
    /// refused by name rather than overflowing the stack.
    #[test]
    fn long_operator_chains_fit_the_stack_or_are_refused() {
        let terms = MAX_TOKENS.div_ceil(2);
        let longest = format!("id{}", " + id".repeat(terms - 1));
        std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                let e = CompiledExpr::compile(&longest, &test_util::schema()).expect("compiles");
                e.evaluate(&test_util::batch()).expect("evaluates");
                let deep = format!(
                    "{}1{}",
                    "(".repeat(MAX_TOKENS / 2),
                    ")".repeat(MAX_TOKENS / 2)
                );
                assert!(CompiledExpr::compile(&deep, &test_util::schema()).is_err());
            })
            .expect("thread")
            .join()
            .expect("no stack overflow");
        let too_long = format!("id{}", " + id".repeat(terms));
        let err = CompiledExpr::compile(&too_long, &test_util::schema()).expect_err("refused");
        assert!(err.contains("too long") && err.len() < 300, "{err}");
    }

    /// Function names that contain one of the words above for another reason.
    const ALLOWED_NAMES: &[&str] = &["input_file_name", "file_row_index"];
}
