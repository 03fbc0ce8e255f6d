//! IFS Cloud OData v4 source and Slack approvals back into IFS for ml-connector. (under construction)
