//! SAP Gateway OData v2 source (under construction).
