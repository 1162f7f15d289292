; JSX element names are component references (JavaScript and TSX grammars).

(jsx_opening_element name: (identifier) @name.reference.class)
(jsx_self_closing_element name: (identifier) @name.reference.class)
