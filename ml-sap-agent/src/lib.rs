//! SAP relay agent and host transport (under construction).
