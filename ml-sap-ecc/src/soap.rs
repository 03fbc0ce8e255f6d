//! [`SoapRfcTransport`]: RFC over SAP's SOAP-RFC service (`/sap/bc/soap/rfc`), no JCo/NCo.
//!
//! `POST /sap/bc/soap/rfc?sap-client=NNN&sap-language=EN` with HTTP Basic, a SOAP 1.1
//! envelope whose body holds one element named like the function module in
//! `urn:sap-com:document:sap:rfc:functions`, parameters as unqualified children, tables
//! as `<item>` rows. The answer is `FM.Response` (also `FMResponse` is seen: both are
//! accepted); a SOAP fault carries the ABAP exception (its exact shape is unconfirmed:
//! the exception is read from `detail//Name`, else from `faultstring`).

use std::fmt::{self, Write as _};
use std::sync::Arc;

use ::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use ::http::{HeaderMap, StatusCode};
use async_trait::async_trait;
use jiff::Timestamp;
use ml_core::auth::{BasicCredentials, Credentials};
use ml_core::error::Error;
use ml_core::http::{ApiClient, ErrorModel, Request, TransportError};
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::rfc::{RfcCall, RfcError, RfcErrorKind, RfcResponse, RfcRow, RfcTransport, RfcValue};

/// The RFC namespace of SOAP-RFC bodies.
pub const RFC_NAMESPACE: &str = "urn:sap-com:document:sap:rfc:functions";
/// The service path.
pub const SOAP_RFC_PATH: &str = "/sap/bc/soap/rfc";
/// The largest answer read (RFC_READ_TABLE pages are bounded by `ROWCOUNT`).
pub const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The element name of a function module (`/` in names becomes `_-`).
fn element_name(function: &str) -> String {
    function.replace('/', "_-")
}

/// The SOAP 1.1 request body of `call`.
pub fn encode_request(call: &RfcCall) -> String {
    let name = element_name(call.function());
    let mut out = String::with_capacity(512);
    out.push_str(r#"<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>"#);
    let _ = write!(out, r#"<rfc:{name} xmlns:rfc="{RFC_NAMESPACE}">"#);
    for (param, value) in call.params() {
        let param = element_name(param);
        match value {
            RfcValue::Scalar(s) => push_field(&mut out, &param, s),
            RfcValue::Structure(fields) => {
                let _ = write!(out, "<{param}>");
                for (f, v) in fields {
                    push_field(&mut out, f, v);
                }
                let _ = write!(out, "</{param}>");
            }
            RfcValue::Table(rows) if rows.is_empty() => {
                let _ = write!(out, "<{param}/>");
            }
            RfcValue::Table(rows) => {
                let _ = write!(out, "<{param}>");
                for row in rows {
                    out.push_str("<item>");
                    for (f, v) in row {
                        push_field(&mut out, f, v);
                    }
                    out.push_str("</item>");
                }
                let _ = write!(out, "</{param}>");
            }
        }
    }
    let _ = write!(out, "</rfc:{name}></SOAP-ENV:Body></SOAP-ENV:Envelope>");
    out
}

fn push_field(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// A parsed XML element (local names only; text kept exactly, blanks included).
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn find(&self, name: &str) -> Option<&Node> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

fn protocol(message: impl Into<String>) -> RfcError {
    RfcError::new(RfcErrorKind::Protocol, message)
}

fn parse_tree(xml: &str) -> Result<Node, RfcError> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Node> = vec![Node::default()];
    loop {
        let event = reader
            .read_event()
            .map_err(|e| protocol(format!("not XML: {e}")))?;
        match event {
            Event::Start(e) => stack.push(Node {
                name: e.local_name().as_ref().to_owned(),
                ..Node::default()
            }),
            Event::Empty(e) => {
                let node = Node {
                    name: e.local_name().as_ref().to_owned(),
                    ..Node::default()
                };
                if let Some(top) = stack.last_mut() {
                    top.children.push(node);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| protocol("unbalanced XML"))?;
                match stack.last_mut() {
                    Some(top) => top.children.push(node),
                    None => return Err(protocol("unbalanced XML")),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&c.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&r)
                        .ok_or_else(|| protocol(format!("unknown entity &{};", &*r)))?
                        .to_owned(),
                    Err(e) => return Err(protocol(format!("bad character reference: {e}"))),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&ch);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(protocol("truncated XML"));
    }
    stack.pop().ok_or_else(|| protocol("empty XML"))
}

fn row_of(node: &Node) -> RfcRow {
    node.children
        .iter()
        .map(|f| (f.name.clone(), f.text.clone()))
        .collect()
}

fn value_of(node: &Node) -> RfcValue {
    if node.children.is_empty() {
        return RfcValue::Scalar(node.text.clone());
    }
    if node.children.iter().all(|c| c.name == "item") {
        return RfcValue::Table(node.children.iter().map(row_of).collect());
    }
    RfcValue::Structure(row_of(node))
}

/// The kind an exception name (or a bare fault string) stands for.
fn kind_of(name: &str, message: &str) -> RfcError {
    match name {
        "SYSTEM_FAILURE" | "RFC_ERROR_SYSTEM_FAILURE" | "RFC_ABAP_RUNTIME_FAILURE" => {
            RfcError::system_failure(format!("{name}: {message}"))
        }
        "COMMUNICATION_FAILURE" | "RFC_ERROR_COMMUNICATION" | "RFC_COMMUNICATION_FAILURE" => {
            RfcError::new(RfcErrorKind::Communication, message)
        }
        "RFC_ERROR_LOGON_FAILURE" | "RFC_LOGON_FAILURE" => {
            RfcError::new(RfcErrorKind::Logon, message)
        }
        "FU_NOT_FOUND" | "FUNCTION_NOT_FOUND" | "RFC_ERROR_FUNCTION_NOT_FOUND" => {
            RfcError::new(RfcErrorKind::NotFound, format!("{name}: {message}"))
        }
        "RFC_ABAP_MESSAGE" | "RFC_ERROR_MESSAGE" => {
            RfcError::new(RfcErrorKind::AbapMessage, message)
        }
        other => RfcError::abap_exception(other, message),
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 30
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn fault_error(fault: &Node) -> RfcError {
    let code = fault.child("faultcode").map_or("", |n| n.text.trim());
    let string = fault.child("faultstring").map_or("", |n| n.text.trim());
    let detail = fault.child("detail");
    let name = detail
        .and_then(|d| d.find("Name"))
        .map(|n| n.text.trim().to_owned())
        .filter(|n| !n.is_empty());
    let text = detail
        .and_then(|d| d.find("Text").or_else(|| d.find("Message")))
        .map(|n| n.text.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| string.to_owned());
    match name {
        // The fault string may say what the detail does not (`SYSTEM_FAILURE` in the
        // detail, `Runtime error TSV_TNEW_PAGE_ALLOC_FAILED` in the string: a memory dump,
        // retried smaller): both are kept.
        Some(n) if !string.is_empty() && string != n && !text.contains(string) => {
            kind_of(&n, &format!("{string}: {text}"))
        }
        Some(n) => kind_of(&n, &text),
        None if is_identifier(string) => kind_of(string, &text),
        // A fault without an exception name: a runtime error on the server side, or a
        // message the function raised on bad input.
        None if code.ends_with("Server") => RfcError::system_failure(text),
        None => RfcError::new(RfcErrorKind::AbapMessage, text),
    }
}

/// Reads a SOAP-RFC answer of `function`: its parameters, or the error its fault stands
/// for.
pub fn decode_response(function: &str, xml: &str) -> Result<RfcResponse, RfcError> {
    let root = parse_tree(xml)?;
    let body = root
        .find("Body")
        .ok_or_else(|| protocol("no SOAP Body in the answer"))?;
    let first = body
        .children
        .first()
        .ok_or_else(|| protocol("empty SOAP Body"))?;
    if first.name == "Fault" {
        return Err(fault_error(first));
    }
    let name = element_name(function);
    let dotted = format!("{name}.Response");
    let bare = format!("{name}Response");
    if first.name != dotted && first.name != bare {
        return Err(protocol(format!(
            "expected {dotted}, got element {}",
            first.name
        )));
    }
    let params = first
        .children
        .iter()
        .map(|c| (c.name.clone(), value_of(c)))
        .collect();
    Ok(RfcResponse { params })
}

/// Maps HTTP answers and transport failures of the SOAP-RFC service to [`RfcError`].
struct SoapModel<'a> {
    function: &'a str,
}

impl ErrorModel for SoapModel<'_> {
    type Error = RfcError;

    fn parse_error(
        &self,
        status: StatusCode,
        _headers: &HeaderMap,
        body: &[u8],
        _now: Timestamp,
    ) -> Option<RfcError> {
        if status.is_success() {
            return None;
        }
        let text = String::from_utf8_lossy(body);
        Some(match status.as_u16() {
            401 => RfcError::new(RfcErrorKind::Logon, "HTTP 401: logon refused"),
            403 => RfcError::new(
                RfcErrorKind::Logon,
                "HTTP 403: user not allowed on the service",
            ),
            404 => RfcError::new(
                RfcErrorKind::NotFound,
                "HTTP 404: SOAP-RFC service not found (is /sap/bc/soap/rfc active in SICF?)",
            ),
            _ => match decode_response(self.function, &text) {
                Err(e) if e.kind != RfcErrorKind::Protocol => e,
                _ if status.is_server_error() || matches!(status.as_u16(), 408 | 429) => {
                    RfcError::new(
                        RfcErrorKind::Communication,
                        format!("HTTP {}", status.as_u16()),
                    )
                }
                _ => RfcError::new(
                    RfcErrorKind::AbapMessage,
                    format!("HTTP {}", status.as_u16()),
                ),
            },
        })
    }

    fn transport_error(&self, err: TransportError) -> RfcError {
        RfcError::new(RfcErrorKind::Communication, err.message)
    }

    fn credentials_error(&self, err: Error) -> RfcError {
        RfcError::new(RfcErrorKind::Logon, err.to_string())
    }
}

/// RFC over SOAP-RFC (see the module docs).
#[derive(Clone)]
pub struct SoapRfcTransport {
    api: ApiClient,
    endpoint: String,
    system: String,
}

impl fmt::Debug for SoapRfcTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoapRfcTransport")
            .field("system", &self.system)
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl SoapRfcTransport {
    /// A transport to `base_url` (`https://erp.example.com:44300`), logging on to `client`
    /// in `language` with Basic credentials, through `http` (build it with ml-core's
    /// `ClientOptions`).
    pub fn new(
        http: reqwest::Client,
        base_url: &url::Url,
        client: &str,
        language: &str,
        credentials: BasicCredentials,
    ) -> Self {
        let host = base_url.host_str().unwrap_or_default();
        let host = match base_url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let base = base_url.as_str().trim_end_matches('/');
        Self {
            api: ApiClient::reqwest(http)
                .with_credentials(Credentials::Basic(credentials))
                .with_body_limit(BODY_LIMIT),
            endpoint: format!("{base}{SOAP_RFC_PATH}?sap-client={client}&sap-language={language}"),
            system: format!("{host}, client={client}"),
        }
    }

    /// Uses another [`ApiClient`] transport (a proxy, a recorder in tests).
    #[must_use]
    pub fn with_api_client(mut self, api: ApiClient) -> Self {
        self.api = api;
        self
    }
}

#[async_trait]
impl RfcTransport for SoapRfcTransport {
    async fn call(&self, call: &RfcCall) -> Result<RfcResponse, RfcError> {
        let body = encode_request(call).into_bytes();
        let request = Request::post(&self.endpoint)
            .map_err(|e| RfcError::new(RfcErrorKind::NotFound, e.to_string()))?
            .body("text/xml; charset=utf-8", body)
            .header(
                HeaderName::from_static("soapaction"),
                HeaderValue::from_static(RFC_NAMESPACE),
            )
            .idempotent(true);
        let model = SoapModel {
            function: call.function(),
        };
        let response = self.api.send(&model, request).await?;
        let ct = response
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.is_empty() && !ct.contains("xml") {
            return Err(protocol(format!("answer is {ct}, not XML")));
        }
        decode_response(call.function(), &response.text())
    }

    fn system(&self) -> String {
        self.system.clone()
    }
}

/// Shares one transport between clients.
pub type SharedTransport = Arc<dyn RfcTransport>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_soap_rfc() {
        let mut row = RfcRow::new();
        row.insert("TEXT".into(), "NAME1 = 'A&B <Co>'".into());
        let call = RfcCall::new("RFC_READ_TABLE")
            .with_import("QUERY_TABLE", "LFA1")
            .with_table("OPTIONS", vec![row])
            .expect_table("DATA");
        let xml = encode_request(&call);
        assert!(xml.contains(
            r#"<rfc:RFC_READ_TABLE xmlns:rfc="urn:sap-com:document:sap:rfc:functions">"#
        ));
        assert!(xml.contains("<QUERY_TABLE>LFA1</QUERY_TABLE>"));
        assert!(xml.contains(
            "<OPTIONS><item><TEXT>NAME1 = &apos;A&amp;B &lt;Co&gt;&apos;</TEXT></item></OPTIONS>"
        ));
        assert!(xml.contains("<DATA/>"));
        assert_eq!(
            element_name("/SAPDS/RFC_READ_TABLE2"),
            "_-SAPDS_-RFC_READ_TABLE2"
        );
    }

    #[test]
    fn both_response_names_and_blanks_are_kept() {
        for name in ["RFC_READ_TABLE.Response", "RFC_READ_TABLE_Response_x"] {
            let xml = format!(
                r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Header/><soap-env:Body><n0:{name} xmlns:n0="urn:sap-com:document:sap:rfc:functions"><DATA><item><WA>  0000000042 A|B; &amp; C</WA></item><item><WA>x</WA></item></DATA><FIELDS/><OPTIONS><item><TEXT>A</TEXT></item></OPTIONS></n0:{name}></soap-env:Body></soap-env:Envelope>"#
            );
            let r = decode_response("RFC_READ_TABLE", &xml);
            if name.ends_with("_x") {
                assert_eq!(r.expect_err("wrong element").kind, RfcErrorKind::Protocol);
                continue;
            }
            let r = r.expect("decoded");
            assert_eq!(r.table("DATA")[0]["WA"], "  0000000042 A|B; & C");
            assert_eq!(r.table("DATA").len(), 2);
            assert!(r.table("FIELDS").is_empty());
        }
        let xml = "<Envelope><Body><BAPI_PO_GETDETAIL1Response><POHEADER><PO_NUMBER>4500000001</PO_NUMBER></POHEADER><RETURN/></BAPI_PO_GETDETAIL1Response></Body></Envelope>";
        let r = decode_response("BAPI_PO_GETDETAIL1", xml).expect("bare Response");
        assert_eq!(
            r.structure("POHEADER").expect("h")["PO_NUMBER"],
            "4500000001"
        );
        assert!(r.table("RETURN").is_empty());
    }

    #[test]
    fn faults_map_to_rfc_errors() {
        let fault = |code: &str, string: &str, detail: &str| {
            format!(
                r#"<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/"><soap-env:Body><soap-env:Fault><faultcode>soap-env:{code}</faultcode><faultstring>{string}</faultstring>{detail}</soap-env:Fault></soap-env:Body></soap-env:Envelope>"#
            )
        };
        let e = decode_response(
            "RFC_READ_TABLE",
            &fault(
                "Client",
                "DATA_BUFFER_EXCEEDED",
                r#"<detail><rfc:RFC_READ_TABLE.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions"><Name>DATA_BUFFER_EXCEEDED</Name><Text>row too wide</Text></rfc:RFC_READ_TABLE.Exception></detail>"#,
            ),
        )
        .expect_err("fault");
        assert_eq!(e.exception(), Some("DATA_BUFFER_EXCEEDED"));
        assert_eq!(e.message, "row too wide");
        let e = decode_response("F", &fault("Client", "OPTION_NOT_VALID", "")).expect_err("f");
        assert_eq!(e.exception(), Some("OPTION_NOT_VALID"));
        let e = decode_response("F", &fault("Server", "SYSTEM_FAILURE", "")).expect_err("f");
        assert!(e.class().is_retryable());
        let e = decode_response(
            "F",
            &fault(
                "Server",
                "Runtime error TSV_TNEW_PAGE_ALLOC_FAILED occurred",
                "",
            ),
        )
        .expect_err("f");
        assert!(e.is_memory_dump());
        // The dump named as the fault's exception (detail/Name), as some gateways do.
        let e = decode_response(
            "F",
            &fault(
                "Server",
                "TSV_TNEW_PAGE_ALLOC_FAILED",
                r#"<detail><rfc:F.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions"><Name>TSV_TNEW_PAGE_ALLOC_FAILED</Name><Text>no memory</Text></rfc:F.Exception></detail>"#,
            ),
        )
        .expect_err("f");
        assert!(e.is_memory_dump(), "{e:?}");
        // The dump named in the fault string, the detail naming only SYSTEM_FAILURE.
        let e = decode_response(
            "RFC_READ_TABLE",
            &fault(
                "Server",
                "Runtime error TSV_TNEW_PAGE_ALLOC_FAILED",
                r#"<detail><rfc:F.Exception xmlns:rfc="urn:sap-com:document:sap:rfc:functions"><Name>SYSTEM_FAILURE</Name><Text>No more storage space available for extending an internal table.</Text></rfc:F.Exception></detail>"#,
            ),
        )
        .expect_err("fault");
        assert!(e.is_memory_dump(), "{e:?}");
        assert!(e.class().is_retryable());
        assert_eq!(e.exception(), None);
        assert_eq!(
            decode_response("F", "<html>gateway</html>")
                .expect_err("no soap")
                .kind,
            RfcErrorKind::Protocol
        );
        assert_eq!(
            decode_response("F", "<a><b>").expect_err("truncated").kind,
            RfcErrorKind::Protocol
        );
    }

    #[test]
    fn http_statuses_map_to_kinds() {
        let m = SoapModel { function: "F" };
        let now = Timestamp::UNIX_EPOCH;
        let h = HeaderMap::new();
        assert!(m.parse_error(StatusCode::OK, &h, b"", now).is_none());
        let k = |s: u16, body: &str| {
            m.parse_error(
                StatusCode::from_u16(s).expect("s"),
                &h,
                body.as_bytes(),
                now,
            )
            .expect("error")
            .kind
        };
        assert_eq!(k(401, ""), RfcErrorKind::Logon);
        assert_eq!(k(404, ""), RfcErrorKind::NotFound);
        assert_eq!(k(503, "busy"), RfcErrorKind::Communication);
        assert_eq!(k(400, "bad"), RfcErrorKind::AbapMessage);
        let fault = "<E><Body><Fault><faultcode>Client</faultcode><faultstring>TABLE_NOT_AVAILABLE</faultstring></Fault></Body></E>";
        assert_eq!(
            k(500, fault),
            RfcErrorKind::AbapException("TABLE_NOT_AVAILABLE".into())
        );
    }
}
