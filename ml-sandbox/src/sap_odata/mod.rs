//! SAP Gateway OData v2 emulator (under construction).
