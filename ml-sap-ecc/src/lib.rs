//! SAP ECC source for ml-connector: RFC (SOAP-RFC or a host transport), OData v2, IDoc push. (under construction)
