//! Oracle Fusion Cloud ERP REST source for ml-connector. (being built).
