//! The dictionary of the emulated tables: real field names, ABAP types and the output
//! widths `RFC_READ_TABLE` reports (`LENGTH`). Widths of packed fields are their DDIC
//! output lengths (CURR 13,2 -> 16, QUAN 13,3 -> 17), as RFC_READ_TABLE sums them.

/// One field of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    /// `FIELDNAME`.
    pub name: &'static str,
    /// ABAP type letter (`C`, `N`, `D`, `T`, `P`).
    pub typ: char,
    /// Output width.
    pub len: usize,
    /// Whether the field is part of the primary key.
    pub key: bool,
    /// `FIELDTEXT`.
    pub text: &'static str,
}

const fn k(name: &'static str, typ: char, len: usize, text: &'static str) -> FieldDef {
    FieldDef {
        name,
        typ,
        len,
        key: true,
        text,
    }
}

const fn f(name: &'static str, typ: char, len: usize, text: &'static str) -> FieldDef {
    FieldDef {
        name,
        typ,
        len,
        key: false,
        text,
    }
}

/// Purchasing document header.
pub const EKKO: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("EBELN", 'C', 10, "Purchasing Document Number"),
    f("BUKRS", 'C', 4, "Company Code"),
    f("BSTYP", 'C', 1, "Purchasing Document Category"),
    f("BSART", 'C', 4, "Purchasing Document Type"),
    f("LOEKZ", 'C', 1, "Deletion Indicator"),
    f("STATU", 'C', 1, "Status of Purchasing Document"),
    f("AEDAT", 'D', 8, "Date on which the record was created"),
    f("ERNAM", 'C', 12, "Name of Person who Created the Object"),
    f("LIFNR", 'C', 10, "Vendor Account Number"),
    f("ZTERM", 'C', 4, "Terms of Payment Key"),
    f("EKORG", 'C', 4, "Purchasing Organization"),
    f("EKGRP", 'C', 3, "Purchasing Group"),
    f("WAERS", 'C', 5, "Currency Key"),
    f("WKURS", 'P', 12, "Exchange Rate"),
    f("BEDAT", 'D', 8, "Purchasing Document Date"),
    f("FRGKE", 'C', 1, "Release Indicator"),
];

/// Purchasing document item.
pub const EKPO: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("EBELN", 'C', 10, "Purchasing Document Number"),
    k("EBELP", 'N', 5, "Item Number of Purchasing Document"),
    f("LOEKZ", 'C', 1, "Deletion Indicator"),
    f("TXZ01", 'C', 40, "Short Text"),
    f("MATNR", 'C', 18, "Material Number"),
    f("WERKS", 'C', 4, "Plant"),
    f("MATKL", 'C', 9, "Material Group"),
    f("MENGE", 'P', 17, "Purchase Order Quantity"),
    f("MEINS", 'C', 3, "Order Unit"),
    f("NETPR", 'P', 14, "Net Price"),
    f("PEINH", 'P', 6, "Price Unit"),
    f("NETWR", 'P', 16, "Net Order Value"),
    f("KNTTP", 'C', 1, "Account Assignment Category"),
    f("AFNAM", 'C', 12, "Name of Requisitioner"),
];

/// Account assignment in purchasing.
pub const EKKN: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("EBELN", 'C', 10, "Purchasing Document Number"),
    k("EBELP", 'N', 5, "Item Number of Purchasing Document"),
    k("ZEKKN", 'N', 2, "Sequential Number of Account Assignment"),
    f("SAKTO", 'C', 10, "G/L Account Number"),
    f("KOSTL", 'C', 10, "Cost Center"),
    f("NETWR", 'P', 16, "Net Order Value"),
    f("MENGE", 'P', 17, "Quantity"),
];

/// Invoice document header (MM logistics invoice verification).
pub const RBKP: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("BELNR", 'C', 10, "Document Number of an Invoice Document"),
    k("GJAHR", 'N', 4, "Fiscal Year"),
    f("BLART", 'C', 2, "Document Type"),
    f("BLDAT", 'D', 8, "Invoice Date in Document"),
    f("BUDAT", 'D', 8, "Posting Date in the Document"),
    f("USNAM", 'C', 12, "User name"),
    f(
        "CPUDT",
        'D',
        8,
        "Day On Which Accounting Document Was Entered",
    ),
    f("CPUTM", 'T', 6, "Time of Entry"),
    f("XBLNR", 'C', 16, "Reference Document Number"),
    f("BUKRS", 'C', 4, "Company Code"),
    f("LIFNR", 'C', 10, "Different Invoicing Party"),
    f("WAERS", 'C', 5, "Currency Key"),
    f(
        "RMWWR",
        'P',
        16,
        "Gross Invoice Amount in Document Currency",
    ),
    f("WMWST1", 'P', 16, "Tax Amount in Document Currency"),
    f("ZTERM", 'C', 4, "Terms of Payment Key"),
    f("ZLSPR", 'C', 1, "Payment Block Key"),
    f("STBLG", 'C', 10, "Reverse Document Number"),
    f("STJAH", 'N', 4, "Fiscal Year of Reversal Document"),
    f("RBSTAT", 'C', 1, "Invoice document status"),
];

/// Document item: incoming invoice.
pub const RSEG: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("BELNR", 'C', 10, "Document Number of an Invoice Document"),
    k("GJAHR", 'N', 4, "Fiscal Year"),
    k("BUZEI", 'N', 6, "Document Item in Invoice Document"),
    f("EBELN", 'C', 10, "Purchasing Document Number"),
    f("EBELP", 'N', 5, "Item Number of Purchasing Document"),
    f("MATNR", 'C', 18, "Material Number"),
    f("BUKRS", 'C', 4, "Company Code"),
    f("WRBTR", 'P', 16, "Amount in document currency"),
    f("MENGE", 'P', 17, "Quantity"),
    f("MEINS", 'C', 3, "Base Unit of Measure"),
];

/// Accounting document header.
pub const BKPF: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("BUKRS", 'C', 4, "Company Code"),
    k("BELNR", 'C', 10, "Accounting Document Number"),
    k("GJAHR", 'N', 4, "Fiscal Year"),
    f("BLART", 'C', 2, "Document Type"),
    f("BLDAT", 'D', 8, "Document Date in Document"),
    f("BUDAT", 'D', 8, "Posting Date in the Document"),
    f("MONAT", 'N', 2, "Fiscal Period"),
    f(
        "CPUDT",
        'D',
        8,
        "Day On Which Accounting Document Was Entered",
    ),
    f("CPUTM", 'T', 6, "Time of Entry"),
    f(
        "AEDAT",
        'D',
        8,
        "Date of the Last Document Change by Transaction",
    ),
    f("UPDDT", 'D', 8, "Date of the Last Document Update"),
    f("USNAM", 'C', 12, "User name"),
    f("TCODE", 'C', 20, "Transaction Code"),
    f("XBLNR", 'C', 16, "Reference Document Number"),
    f("BKTXT", 'C', 25, "Document Header Text"),
    f("WAERS", 'C', 5, "Currency Key"),
    f("STBLG", 'C', 10, "Reverse Document Number"),
    f("AWTYP", 'C', 5, "Reference Transaction"),
    f("AWKEY", 'C', 20, "Reference Key"),
];

/// Accounting document segment (a cluster table in ECC: wide, read by document key).
pub const BSEG: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("BUKRS", 'C', 4, "Company Code"),
    k("BELNR", 'C', 10, "Accounting Document Number"),
    k("GJAHR", 'N', 4, "Fiscal Year"),
    k(
        "BUZEI",
        'N',
        3,
        "Number of Line Item Within Accounting Document",
    ),
    f("BUZID", 'C', 1, "Identification of the Line Item"),
    f("AUGDT", 'D', 8, "Clearing Date"),
    f("AUGBL", 'C', 10, "Document Number of the Clearing Document"),
    f("BSCHL", 'C', 2, "Posting Key"),
    f("KOART", 'C', 1, "Account Type"),
    f("UMSKZ", 'C', 1, "Special G/L Indicator"),
    f("SHKZG", 'C', 1, "Debit/Credit Indicator"),
    f("GSBER", 'C', 4, "Business Area"),
    f("MWSKZ", 'C', 2, "Tax on sales/purchases code"),
    f("DMBTR", 'P', 16, "Amount in Local Currency"),
    f("WRBTR", 'P', 16, "Amount in Document Currency"),
    f("PSWBT", 'P', 16, "Amount for Updating in General Ledger"),
    f(
        "PSWSL",
        'C',
        5,
        "Update Currency for General Ledger Transaction Figures",
    ),
    f("ZUONR", 'C', 18, "Assignment Number"),
    f("SGTXT", 'C', 50, "Item Text"),
    f("VBUND", 'C', 6, "Company ID of trading partner"),
    f("KOSTL", 'C', 10, "Cost Center"),
    f("AUFNR", 'C', 12, "Order Number"),
    f("VBELN", 'C', 10, "Billing Document"),
    f("ANLN1", 'C', 12, "Main Asset Number"),
    f("SAKNR", 'C', 10, "G/L Account Number"),
    f("HKONT", 'C', 10, "General Ledger Account"),
    f("KUNNR", 'C', 10, "Customer Number"),
    f("LIFNR", 'C', 10, "Account Number of Vendor or Creditor"),
    f("ZFBDT", 'D', 8, "Baseline Date for Due Date Calculation"),
    f("ZTERM", 'C', 4, "Terms of Payment Key"),
    f("ZLSPR", 'C', 1, "Payment Block Key"),
    f("MATNR", 'C', 18, "Material Number"),
    f("WERKS", 'C', 4, "Plant"),
    f("MENGE", 'P', 17, "Quantity"),
    f("MEINS", 'C', 3, "Base Unit of Measure"),
    f("EBELN", 'C', 10, "Purchasing Document Number"),
    f("EBELP", 'N', 5, "Item Number of Purchasing Document"),
    f("PRCTR", 'C', 10, "Profit Center"),
    f("XREF1", 'C', 12, "Business partner reference key"),
    f("XREF2", 'C', 12, "Business partner reference key"),
    f("XREF3", 'C', 20, "Reference key for line item"),
    f("PROJK", 'N', 8, "WBS Element"),
    f("FKBER", 'C', 16, "Functional Area"),
    f("SEGMENT", 'C', 10, "Segment for Segmental Reporting"),
    f("BUPLA", 'C', 4, "Business Place"),
    f("HBKID", 'C', 5, "Short Key for a House Bank"),
    f("BVTYP", 'C', 4, "Partner bank type"),
    f("NPLNR", 'C', 12, "Network Number for Account Assignment"),
    f("KSTRG", 'C', 12, "Cost Object"),
    f("IMKEY", 'C', 8, "Internal Key for Real Estate Object"),
    f("FIPOS", 'C', 14, "Commitment Item"),
    f("VALUT", 'D', 8, "Value date"),
    f("KOKRS", 'C', 4, "Controlling Area"),
    f("TXJCD", 'C', 15, "Tax Jurisdiction"),
    f("FWBAS", 'P', 16, "Tax Base Amount in Document Currency"),
    f("MWSTS", 'P', 16, "Tax Amount in Local Currency"),
    f("WMWST", 'P', 16, "Tax amount in document currency"),
    f("DMBE2", 'P', 16, "Amount in Second Local Currency"),
    f("DMBE3", 'P', 16, "Amount in Third Local Currency"),
];

/// Vendor master (general section).
pub const LFA1: &[FieldDef] = &[
    k("MANDT", 'C', 3, "Client"),
    k("LIFNR", 'C', 10, "Account Number of Vendor or Creditor"),
    f("LAND1", 'C', 3, "Country Key"),
    f("NAME1", 'C', 35, "Name 1"),
    f("NAME2", 'C', 35, "Name 2"),
    f("ORT01", 'C', 35, "City"),
    f("PSTLZ", 'C', 10, "Postal Code"),
    f("STRAS", 'C', 35, "House number and street"),
    f("TELF1", 'C', 16, "First telephone number"),
    f("ERDAT", 'D', 8, "Date on which the Record Was Created"),
    f("KTOKK", 'C', 4, "Vendor account group"),
    f("SPERR", 'C', 1, "Central posting block"),
    f("LOEVM", 'C', 1, "Central Deletion Flag for Master Record"),
    f("STCD1", 'C', 16, "Tax Number 1"),
];

/// Change document header.
pub const CDHDR: &[FieldDef] = &[
    k("MANDANT", 'C', 3, "Client"),
    k("OBJECTCLAS", 'C', 15, "Object class"),
    k("OBJECTID", 'C', 90, "Object value"),
    k("CHANGENR", 'C', 10, "Document change number"),
    f(
        "USERNAME",
        'C',
        12,
        "User name of the person responsible in change document",
    ),
    f("UDATE", 'D', 8, "Creation date of the change document"),
    f("UTIME", 'T', 6, "Time changed"),
    f("TCODE", 'C', 20, "Transaction in which a change was made"),
    f("PLANCHNGNR", 'C', 12, "Planned change number"),
    f(
        "ACT_CHNGNO",
        'C',
        10,
        "Change number of the document created by this change",
    ),
    f("WAS_PLANND", 'C', 1, "Flag that changes were planned"),
    f(
        "CHANGE_IND",
        'C',
        1,
        "Application object change type (U, I, E, D)",
    ),
    f("LANGU", 'C', 1, "Language Key"),
    f("VERSION", 'C', 3, "3-Byte field"),
];

/// Every table served, by name.
pub const TABLES: &[(&str, &[FieldDef])] = &[
    ("EKKO", EKKO),
    ("EKPO", EKPO),
    ("EKKN", EKKN),
    ("RBKP", RBKP),
    ("RSEG", RSEG),
    ("BKPF", BKPF),
    ("BSEG", BSEG),
    ("LFA1", LFA1),
    ("CDHDR", CDHDR),
];

/// The definition of `table`.
pub fn table(name: &str) -> Option<&'static [FieldDef]> {
    TABLES.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
}

/// The client field of a table (`MANDT`, or `MANDANT` in CDHDR).
pub fn client_field(defs: &[FieldDef]) -> &'static str {
    defs.first().map_or("MANDT", |d| d.name)
}
