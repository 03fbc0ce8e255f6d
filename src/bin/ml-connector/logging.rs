//! The command line's log: events (what failed and was retried, quarantined, paused, taken
//! over) on stderr, apart from the report on stdout. Warnings and errors by default;
//! `ML_LOG` sets the level (`off`, `error`, `warn`, `info`, `debug`, `trace`) and
//! `ML_LOG_FORMAT=json` writes one JSON object a line (`ts`, `level`, `target`, `spans`
//! with their fields, `message` and the event's fields) for log collectors. No event
//! carries a secret.

use std::fmt;

use ml_connector::{Error, Result};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the log from `ML_LOG` and `ML_LOG_FORMAT` (read through `var`).
pub(crate) fn init(var: impl Fn(&str) -> Option<String>) -> Result<()> {
    let level = match var("ML_LOG") {
        Some(v) if !v.trim().is_empty() => v.trim().parse().map_err(|_| {
            Error::config(
                "ML_LOG",
                format!("`{v}`: expected off, error, warn, info, debug or trace"),
            )
        })?,
        _ => LevelFilter::WARN,
    };
    let json = match var("ML_LOG_FORMAT").as_deref().map(str::trim) {
        None | Some("" | "text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(Error::config(
                "ML_LOG_FORMAT",
                format!("`{other}`: expected text or json"),
            ));
        }
    };
    // Spans pass whatever the level: a warning inside a delivery then says which delivery
    // (id, destination, stream, record) it is about.
    let filter = filter_fn(move |meta| meta.is_span() || *meta.level() <= level);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = if json {
        tracing_subscriber::registry()
            .with(layer.event_format(JsonLines).with_filter(filter))
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(layer.with_filter(filter))
            .try_init()
    };
    installed.map_err(|e| Error::config("ML_LOG", e.to_string()))
}

/// One JSON object a line.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("ts".into(), jiff::Timestamp::now().to_string().into());
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let fields = span
                        .extensions()
                        .get::<FormattedFields<N>>()
                        .map(|f| f.fields.clone())
                        .unwrap_or_default();
                    let mut s = Map::new();
                    s.insert("name".into(), span.name().into());
                    if !fields.is_empty() {
                        s.insert("fields".into(), fields.into());
                    }
                    Value::Object(s)
                })
                .collect();
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields into the line (`message` is the event's text).
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused_by_name() {
        let e = init(|k| (k == "ML_LOG").then(|| "loud".to_owned())).expect_err("level");
        assert!(e.to_string().contains("ML_LOG"), "{e}");
        let e = init(|k| (k == "ML_LOG_FORMAT").then(|| "xml".to_owned())).expect_err("format");
        assert!(e.to_string().contains("ML_LOG_FORMAT"), "{e}");
    }
}
