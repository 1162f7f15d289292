; Patterns shared by JavaScript, TypeScript and TSX (node names identical in all three grammars).

(function_declaration name: (identifier) @name.definition.function) @definition.function
(generator_function_declaration name: (identifier) @name.definition.function) @definition.function
(method_definition name: (property_identifier) @name.definition.method) @definition.method
(lexical_declaration
  (variable_declarator name: (identifier) @name.definition.function
                       value: [(arrow_function) (function_expression)])) @definition.function
(variable_declaration
  (variable_declarator name: (identifier) @name.definition.function
                       value: [(arrow_function) (function_expression)])) @definition.function
(assignment_expression
  left: (member_expression property: (property_identifier) @name.definition.function)
  right: [(arrow_function) (function_expression)]) @definition.function
(pair key: (property_identifier) @name.definition.function
      value: [(arrow_function) (function_expression)]) @definition.function
(program (lexical_declaration (variable_declarator name: (identifier) @name.definition.constant)) @definition.constant)
(program (export_statement (lexical_declaration (variable_declarator name: (identifier) @name.definition.constant)) @definition.constant))

(call_expression function: (identifier) @name.reference.call)
(call_expression function: (member_expression property: (property_identifier) @name.reference.call))
(new_expression constructor: (identifier) @name.reference.class)
(new_expression constructor: (member_expression property: (property_identifier) @name.reference.class))
(import_specifier name: (identifier) @name.reference.import)
(member_expression object: (identifier) @name.reference.attribute)
