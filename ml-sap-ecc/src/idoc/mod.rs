//! IDoc XML push receiver (under construction).
