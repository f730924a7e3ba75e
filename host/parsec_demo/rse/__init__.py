"""A model of the RSE crypto service (TF-M on the RSE security processor) over RSE comms."""
