-- One database per service: no service reads another's tables.
CREATE DATABASE crm_profile;
CREATE DATABASE crm_tiering;
CREATE DATABASE crm_outreach;
CREATE DATABASE crm_complaints;
