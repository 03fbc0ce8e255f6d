//! SAP ECC source for ml-connector: RFC (SOAP-RFC or a host transport), OData v2, IDoc push. (under construction)

// `odata` (SAP Gateway OData v2 source) and `idoc` (IDoc XML push receiver) are written by
// a second developer in parallel with the RFC modules: keep these two lines.
pub mod idoc;
pub mod odata;
