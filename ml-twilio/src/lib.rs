//! Twilio SMS and SendGrid email sinks for ml-connector, with verified status callbacks. (being built).
