//! Sage X3 source (api1 REST, GraphQL) for ml-connector. (under construction)
